"""The CLI of the daemon era: trigger, dags pause/unpause, backfill, triggers list, events list.

Each command is run in-process with click's CliRunner, against a real daemon subprocess where
the command must reach one (`crashkit.DaemonProcess`) and against the store alone where none
runs. The daemon is another process, so waiting for what it does polls under a deadline.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner
from clikit import CliCalls
from crashkit import DaemonProcess, new_marker, wait_until

from orchestrator.cli import cli
from orchestrator.cli.views import format_time
from orchestrator.daemon.state_lock import StateDirLock

DAGS = """
from orchestrator.authoring.context import TaskContext
from orchestrator.authoring.dag import DAG
from orchestrator.authoring.taskflow import task
from sensors.file import FileSensor
from triggers.file import FileTrigger


@task(in_process=True)
def greet(context: TaskContext) -> str:
    return f"hello {{context.conf.get('name', 'world')}}"


@task(in_process=True)
def broken() -> None:
    raise RuntimeError("no data for this day")


with DAG("hello", description="Say hello"):
    greet()

with DAG("nightly", schedule="@daily", timezone="Europe/Paris", start_date="2024-01-01"):
    greet()

with DAG("broken_nightly", schedule="@daily", start_date="2024-01-01"):
    broken()

with DAG("landing", run_on=FileTrigger(directory={inbox!r}, pattern="*.csv")):
    greet()

with DAG("waits"):
    FileSensor(task_id="landed", directory={waiting!r}, pattern="*.csv", in_process=True)
"""
DEADLINE = 30.0
PARIS = ZoneInfo("Europe/Paris")


@dataclass(frozen=True)
class Project(CliCalls):
    """A DAGs folder written by the test, a state directory, and the folders DAGs watch."""

    root: Path
    dags: Path
    state: Path
    inbox: Path
    waiting: Path

    def run(self, run_id: str) -> dict[str, Any]:
        run: dict[str, Any] = self.json("runs", "show", run_id)["run"]
        return run

    def wait_for_state(self, run_id: str, state: str) -> dict[str, Any]:
        """Poll the run until it is in `state` (the daemon drives it in another process)."""
        wait_until(lambda: self.run(run_id)["state"] == state, DEADLINE, f"{run_id} to be {state}")
        return self.run(run_id)


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Project:
    """An empty working directory (no config file) and no ORCHESTRATOR_* variable set."""
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith("ORCHESTRATOR_"):
            monkeypatch.delenv(name)
    project = Project(
        root=tmp_path,
        dags=tmp_path / "dags",
        state=tmp_path / "state",
        inbox=tmp_path / "inbox",
        waiting=tmp_path / "waiting",
    )
    for folder in (project.dags, project.inbox, project.waiting):
        folder.mkdir()
    text = DAGS.format(inbox=str(project.inbox), waiting=str(project.waiting))
    (project.dags / "pipelines.py").write_text(text)
    return project


@contextmanager
def daemon(project: Project) -> Iterator[DaemonProcess]:
    """A daemon on the project, ready; stopped with SIGTERM at the end."""
    with DaemonProcess(project.state, project.dags, marker=new_marker()) as process:
        process.wait_ready(DEADLINE)
        yield process
        process.terminate()
        assert process.wait_exit(DEADLINE) == 0, process.log_text()


def paris_midnight(day: str) -> float:
    return datetime.fromisoformat(day).replace(tzinfo=PARIS).timestamp()


# -- help ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "command",
    [
        ["trigger"],
        ["backfill"],
        ["dags", "pause"],
        ["dags", "unpause"],
        ["triggers", "list"],
        ["events", "list"],
        ["open"],
    ],
    ids=" ".join,
)
def test_every_new_command_has_a_summary_and_an_example(command: list[str]) -> None:
    result = CliRunner().invoke(cli, [*command, "--help"], prog_name="orchestrator")
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"Usage: orchestrator {' '.join(command)}")
    assert "Example:\n    orchestrator " in result.output


# -- trigger ------------------------------------------------------------------------------------


def test_a_run_triggered_without_a_daemon_waits_queued_and_the_daemon_runs_it(
    project: Project,
) -> None:
    queued = project.ok("trigger", "hello", "--conf", '{"name": "Ada"}')
    run_id = queued.stdout.split()[1]
    assert queued.stdout.strip() == (
        f"run {run_id} queued: no daemon is running; it starts when `orchestrator daemon` "
        "starts (or use `orchestrator run hello` to run it now)"
    )
    run = project.run(run_id)
    assert (run["state"], run["run_type"], run["conf"]) == ("queued", "manual", {"name": "Ada"})
    with daemon(project):
        project.wait_for_state(run_id, "success")
    shown = project.json("runs", "show", run_id)
    (greet,) = shown["task_instances"]
    assert greet["state"] == "success"


def test_trigger_json_says_where_the_run_went(project: Project) -> None:
    answer = project.json("trigger", "hello")
    assert answer["via"] == "store"
    assert project.run(answer["run_id"])["state"] == "queued"


def test_a_dedup_key_queues_one_run_and_names_it_the_second_time(project: Project) -> None:
    first = project.json("trigger", "hello", "--dedup-key", "invoice-42")
    again = project.invoke("trigger", "hello", "--dedup-key", "invoice-42")
    assert again.exit_code == 2
    assert again.stderr.startswith(
        f"error: DAG hello already has run {first['run_id']} for dedup key 'invoice-42'"
    )
    assert [run["run_id"] for run in project.json("runs", "list")] == [first["run_id"]]


def test_trigger_refuses_bad_input_without_writing_anything(project: Project) -> None:
    bad_conf = project.invoke("trigger", "hello", "--conf", "{not json")
    assert bad_conf.exit_code == 2
    assert bad_conf.stderr.startswith("error: --conf is not valid JSON")
    not_object = project.invoke("trigger", "hello", "--conf", "[1, 2]")
    assert "--conf must be a JSON object, got a list" in not_object.stderr
    unknown = project.invoke("trigger", "helo")
    assert unknown.exit_code == 2
    assert unknown.stderr.startswith("error: no DAG with id 'helo'")
    assert "did you mean 'hello'?" in unknown.stderr
    assert not project.state.exists()


def test_a_daemon_not_answering_yet_is_a_clear_error(project: Project) -> None:
    with StateDirLock.acquire(project.state, command="orchestrator daemon"):
        result = project.invoke("trigger", "hello")
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        f"error: the daemon (pid {os.getpid()}) is starting or not answering; try again"
    )


def test_a_daemon_taking_the_lock_meanwhile_is_asked_instead(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("orchestrator.daemon.state_lock.read_holder", lambda state_dir: None)
    with StateDirLock.acquire(project.state, command="orchestrator daemon"):
        result = project.invoke("trigger", "hello")
    assert "is starting or not answering; try again" in result.stderr
    assert project.json("runs", "list") == []  # nothing was written behind its back


def test_a_foreground_run_holding_the_state_is_not_taken_for_a_daemon(project: Project) -> None:
    with StateDirLock.acquire(project.state, command="orchestrator run hello"):
        result = project.invoke("dags", "pause", "hello")
    assert result.exit_code == 2
    assert f"is in use by pid {os.getpid()} (orchestrator run hello)" in result.stderr
    assert "not by a daemon; wait for it to end" in result.stderr


# -- pause / unpause ----------------------------------------------------------------------------


def test_pause_and_unpause_without_a_daemon(project: Project) -> None:
    paused = project.ok("dags", "pause", "hello")
    assert paused.stdout.strip() == "paused hello: no new runs start; running runs go on"
    listing = {dag["dag_id"]: dag for dag in project.json("dags", "list")["dags"]}
    assert listing["hello"]["paused"] is True and listing["nightly"]["paused"] is False
    refused = project.invoke("trigger", "hello")
    assert refused.exit_code == 2
    assert refused.stderr.strip() == (
        "error: DAG 'hello' is paused, so no run of it starts; unpause it first "
        "(`orchestrator dags unpause hello`)"
    )
    unpaused = project.ok("dags", "unpause", "hello")
    assert unpaused.stdout.strip() == "unpaused hello: its runs start again"
    assert project.json("trigger", "hello")["via"] == "store"


def test_pausing_an_unknown_dag_names_the_known_ones(project: Project) -> None:
    result = project.invoke("dags", "pause", "helo")
    assert result.exit_code == 2
    assert result.stderr.startswith("error: no DAG with id 'helo'")
    assert "DAGs loaded: broken_nightly, hello, landing, nightly, waits" in result.stderr


def test_dags_list_shows_paused_schedule_and_what_starts_runs(project: Project) -> None:
    project.ok("dags", "pause", "nightly")
    lines = project.ok("dags", "list").stdout.splitlines()
    rows = {line.split()[0]: line for line in lines if line.strip()}
    assert "paused" in rows["nightly"] and "@daily (Europe/Paris)" in rows["nightly"]
    assert "FileTrigger(directory=" in rows["landing"] and "..." in rows["landing"]
    assert rows["hello"].split()[3:6] == ["no", "-", "-"]
    landing = project.json("dags", "list")["dags"][2]
    assert landing["dag_id"] == "landing" and landing["schedule"] is None
    (source,) = landing["runs_on"]
    assert source.startswith(f"FileTrigger(directory='{project.inbox}', pattern='*.csv'")


# -- backfill -----------------------------------------------------------------------------------


def test_backfill_without_a_daemon_runs_each_interval_here_once(project: Project) -> None:
    first = project.invoke("backfill", "nightly", "--start", "2024-01-01", "--end", "2024-01-03")
    assert first.exit_code == 0, (first.stdout, first.stderr)
    assert first.stdout.startswith(
        "queued 3 runs (0 intervals already had a run); running them here"
    )
    assert first.stdout.count("success") == 3
    runs = sorted(project.json("runs", "list"), key=lambda run: run["logical_date"])
    days = ["2024-01-01", "2024-01-02", "2024-01-03", "2024-01-04"]
    assert [run["logical_date"] for run in runs] == [paris_midnight(day) for day in days[:3]]
    assert [run["data_interval_end"] for run in runs] == [paris_midnight(day) for day in days[1:]]
    assert {(run["run_type"], run["state"]) for run in runs} == {("backfill", "success")}
    assert "2024-01-01 00:00 CET" in first.stdout  # in the DAG's timezone
    again = project.json("backfill", "nightly", "--start", "2024-01-01", "--end", "2024-01-03")
    assert (again["run_ids"], again["skipped"]) == ([], 3)
    assert len(project.json("runs", "list")) == 3


def test_a_failed_backfill_run_exits_1(project: Project) -> None:
    args = ("backfill", "broken_nightly", "--start", "2024-01-01", "--end", "2024-01-01")
    result = project.invoke(*args)
    assert result.exit_code == 1
    assert "failed" in result.stdout
    (run,) = project.json("runs", "list")
    assert run["state"] == "failed"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ("hello", "--start", "2024-01-01", "--end", "2024-01-02"),
            "error: DAG 'hello' has no schedule, so it has no intervals to backfill",
        ),
        (
            ("nightly", "--start", "2024-01-05", "--end", "2024-01-03"),
            "error: backfill end 2024-01-02T23:00:00+00:00 is before its start",
        ),
        (
            ("nightly", "--start", "2024-13-01", "--end", "2024-01-03"),
            "error: --start '2024-13-01' is not an ISO-8601 date or datetime",
        ),
        (
            ("nightly", "--start", "2024-01-01", "--end", "soon"),
            "error: --end 'soon' is not an ISO-8601 date or datetime",
        ),
        (
            ("nighty", "--start", "2024-01-01", "--end", "2024-01-03"),
            "error: no DAG with id 'nighty'",
        ),
    ],
    ids=["no schedule", "end before start", "bad start", "bad end", "unknown DAG"],
)
def test_backfill_refuses_bad_input(project: Project, args: tuple[str, ...], message: str) -> None:
    result = project.invoke("backfill", *args)
    assert result.exit_code == 2
    assert result.stderr.startswith(message), result.stderr
    assert not project.state.exists()


# -- with a daemon ------------------------------------------------------------------------------


def test_with_a_daemon_trigger_pause_and_unpause_go_through_it(project: Project) -> None:
    with daemon(project) as process:
        started = project.ok("trigger", "hello", "--conf", '{"name": "Bob"}')
        run_id = started.stdout.split()[1]
        assert started.stdout.strip() == f"run {run_id} started"
        assert project.wait_for_state(run_id, "success")["conf"] == {"name": "Bob"}
        project.ok("dags", "pause", "hello")
        refused = project.invoke("trigger", "hello")
        assert refused.exit_code == 2 and "DAG 'hello' is paused" in refused.stderr
        project.ok("dags", "unpause", "hello")
        assert project.json("trigger", "hello")["via"] == "daemon"
        keyed = project.json("trigger", "hello", "--dedup-key", "k1")["run_id"]
        again = project.invoke("trigger", "hello", "--dedup-key", "k1")
        assert again.exit_code == 2
        assert again.stderr.startswith(f"error: DAG hello already has run {keyed} for dedup key")
        unknown = project.invoke("dags", "pause", "helo")
        assert unknown.exit_code == 2 and "no DAG with id 'helo'" in unknown.stderr
        foreground = project.invoke("run", "hello")
        assert foreground.exit_code == 2
        assert f"a daemon is running on {project.state} (pid {process.pid}" in foreground.stderr
        assert "use `orchestrator trigger hello` instead" in foreground.stderr


def test_with_a_daemon_backfill_hands_the_runs_to_it(project: Project) -> None:
    args = ("backfill", "nightly", "--start", "2024-01-01", "--end", "2024-01-02")
    with daemon(project):
        queued = project.ok(*args)
        assert queued.stdout.startswith("queued 2 runs (0 intervals already had a run)")
        again = project.json(*args)
        assert (again["via"], again["run_ids"], again["skipped"]) == ("daemon", [], 2)
        backfilled = [run for run in project.json("runs", "list") if run["run_type"] == "backfill"]
        assert sorted(run["logical_date"] for run in backfilled) == [
            paris_midnight("2024-01-01"),
            paris_midnight("2024-01-02"),
        ]
        for run in backfilled:
            project.wait_for_state(run["run_id"], "success")


def test_triggers_and_events_list_what_waits_and_what_started_runs(project: Project) -> None:
    with daemon(project) as process:
        waiting = project.json("trigger", "waits")["run_id"]
        (stored,) = wait_until(
            lambda: project.json("triggers", "list")["deferred"], DEADLINE, "a deferral"
        )
        assert (stored["run_id"], stored["kwargs"]["directory"]) == (waiting, str(project.waiting))
        listing = project.ok("triggers", "list").stdout
        assert listing.startswith(f"Daemon running (pid {process.pid})")
        landing = next(line for line in listing.splitlines() if line.strip().startswith("landing"))
        assert "FileTrigger(directory=" in landing and landing.rstrip().endswith("watching")
        deferred = next(line for line in listing.splitlines() if waiting in line)
        assert "landed" in deferred and f"FileTrigger(directory='{project.waiting}'" in deferred
        # Sensors time out after 7 days unless told otherwise.
        assert deferred.rstrip().endswith(format_time(stored["timeout_at"]))
        (project.inbox / "orders.csv").write_text("id\n1\n")
        (event,) = wait_until(lambda: project.json("events", "list"), DEADLINE, "the event")
        assert event["run_id"] is not None
        project.wait_for_state(event["run_id"], "success")
    assert event["dag_id"] == "landing" and event["payload"]["name"] == "orders.csv"
    assert event["dedup_key"].startswith(f"{project.inbox / 'orders.csv'}:5:")
    table = project.ok("events", "list", "--dag", "landing").stdout
    row = next(line for line in table.splitlines() if event["run_id"] in line)
    assert row.split()[:2] == [str(event["event_id"]), "landing"]
    assert "..." in row  # the long dedup key and source, shortened
    assert project.json("events", "list", "--run", event["run_id"]) == [event]
    after = project.ok("triggers", "list").stdout
    assert after.startswith("No daemon is running, so nothing below is being watched")
    assert "not watching: no daemon is running" in after


def test_empty_listings_say_so_in_a_sentence(project: Project) -> None:
    triggers = project.ok("triggers", "list").stdout
    assert "Nothing is waiting: no DAG has a run trigger and no task is deferred." in triggers
    assert project.json("triggers", "list") == {"daemon": None, "run_triggers": [], "deferred": []}
    events = project.ok("events", "list").stdout.strip()
    assert events.startswith("No events yet: they come from DAGs' run triggers")
    assert project.json("events", "list") == []
    project.json("trigger", "hello")  # the store exists now
    filtered = project.ok("events", "list", "--dag", "landing", "--run", "nope").stdout
    assert filtered.strip() == "No events match DAG 'landing' and run 'nope'."


# -- open ---------------------------------------------------------------------------------------


def test_open_prints_a_link_that_signs_in_once(project: Project) -> None:
    import httpx

    with daemon(project):
        printed = project.ok("open", "--no-browser")
        link = printed.stdout.strip()
        assert "/login/once/" in link and "(this link signs you in once" in printed.stderr
        with httpx.Client(follow_redirects=False) as browser:
            signed_in = browser.get(link)
            assert signed_in.status_code == 303 and signed_in.headers["location"] == "/"
            assert "orch_session" in browser.cookies
            home = browser.get(link.split("/login/")[0] + "/")
            assert home.status_code == 200 and "Runs in the last 24 hours" in home.text
        with httpx.Client(follow_redirects=False) as other:
            again = other.get(link)  # used: refused (or rate-limited), never a session
            assert again.status_code in (401, 429) and "orch_session" not in other.cookies


def test_open_without_a_daemon_says_how_to_start_one(project: Project) -> None:
    result = project.invoke("open", "--no-browser")
    assert result.exit_code != 0
    assert "no daemon runs on" in result.stderr and "orchestrator daemon" in result.stderr
