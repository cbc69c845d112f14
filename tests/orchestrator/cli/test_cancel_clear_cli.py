"""`orchestrator runs cancel` and `orchestrator tasks clear`, with a daemon and without one.

Commands run in-process with click's CliRunner. Without a daemon they edit the store under
the state directory's lock; with one (`crashkit.DaemonProcess`, a real subprocess) they ask
it, and the test polls the store under a deadline, since the daemon is another process.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from clikit import CliCalls
from crashkit import DaemonProcess, new_marker, wait_until

from orchestrator.cli import cli

DAGS = """
from pathlib import Path

import anyio

from orchestrator.authoring.dag import DAG
from orchestrator.authoring.taskflow import task

FIXED = Path({fixed!r})


@task(in_process=True)
def extract() -> int:
    return 5


@task(in_process=True)
def transform(value: int) -> int:
    if not FIXED.exists():
        raise RuntimeError("the fix is not in yet")
    return value * 10


@task(in_process=True)
def load(value: int) -> int:
    return value + 1


@task(in_process=True)
async def hang() -> str:
    if not FIXED.exists():
        await anyio.Event().wait()  # until cancelled
    return "done"


with DAG("etl"):
    load(transform(extract()))

with DAG("stuck"):
    hang()
"""
DEADLINE = 30.0


@dataclass(frozen=True)
class Project(CliCalls):
    """A DAGs folder, a state directory, and the file whose existence fixes the tasks."""

    dags: Path
    state: Path
    fixed: Path

    def tasks(self, run_id: str) -> dict[str, dict[str, Any]]:
        shown = self.json("runs", "show", run_id)["task_instances"]
        return {ti["task_id"]: ti for ti in shown}

    def state_of(self, run_id: str) -> str:
        return str(self.json("runs", "show", run_id)["run"]["state"])

    def wait_for_state(self, run_id: str, state: str) -> None:
        wait_until(lambda: self.state_of(run_id) == state, DEADLINE, f"{run_id} to be {state}")

    def failed_etl_run(self) -> str:
        """A run of `etl` in the foreground, failed in `transform` (no fix yet)."""
        assert self.invoke("run", "etl", "--in-process").exit_code == 1
        (run,) = self.json("runs", "list")
        return str(run["run_id"])


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Project:
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith("ORCHESTRATOR_"):
            monkeypatch.delenv(name)
    project = Project(dags=tmp_path / "dags", state=tmp_path / "state", fixed=tmp_path / "fixed")
    project.dags.mkdir()
    (project.dags / "pipelines.py").write_text(DAGS.format(fixed=str(project.fixed)))
    return project


@contextmanager
def daemon(project: Project) -> Iterator[DaemonProcess]:
    """A daemon on the project (its HTTP API on any free port), stopped at the end."""
    env = {"ORCHESTRATOR_API_PORT": "0"}
    with DaemonProcess(project.state, project.dags, marker=new_marker(), env=env) as process:
        process.wait_ready(DEADLINE)
        yield process
        process.terminate()
        assert process.wait_exit(DEADLINE) == 0, process.log_text()


@pytest.mark.parametrize("command", [["runs", "cancel"], ["tasks", "clear"]], ids=" ".join)
def test_each_command_has_a_summary_and_an_example(command: list[str]) -> None:
    result = CliRunner().invoke(cli, [*command, "--help"], prog_name="orchestrator")
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"Usage: orchestrator {' '.join(command)} [OPTIONS] RUN_ID")
    assert "Example:\n    orchestrator " in result.output


# -- without a daemon ---------------------------------------------------------------------------


def test_without_a_daemon_a_cleared_failed_run_is_queued_and_the_daemon_finishes_it(
    project: Project,
) -> None:
    run_id = project.failed_etl_run()
    project.fixed.touch()
    cleared = project.ok("tasks", "clear", run_id, "transform")
    assert cleared.stdout.splitlines() == [
        f"cleared 2 task instances of run {run_id}: transform, load",
        "no daemon is running: they run when `orchestrator daemon` starts",
    ]
    assert project.state_of(run_id) == "queued"
    assert {t: ti["state"] for t, ti in project.tasks(run_id).items()} == {
        "extract": "success",
        "transform": "none",
        "load": "none",
    }
    with daemon(project):
        project.wait_for_state(run_id, "success")
    tasks = project.tasks(run_id)
    assert {t: ti["try_number"] for t, ti in tasks.items()} == {
        "extract": 1,
        "transform": 2,
        "load": 1,
    }
    first_log = project.invoke("tasks", "logs", run_id, "transform", "--try", "1")
    assert "the fix is not in yet" in first_log.stdout  # the first try's log is kept


def test_without_a_daemon_clear_json_and_no_downstream(project: Project) -> None:
    run_id = project.failed_etl_run()
    answer = project.json("tasks", "clear", run_id, "transform", "--no-downstream")
    assert answer == {
        "run_id": run_id,
        "via": "store",
        "downstream": False,
        "cleared": [{"task_id": "transform", "map_index": -1}],
    }
    tasks = project.tasks(run_id)
    assert (tasks["transform"]["state"], tasks["load"]["state"]) == ("none", "upstream_failed")


def test_clear_refuses_unknown_runs_and_tasks_without_changing_anything(
    project: Project,
) -> None:
    run_id = project.failed_etl_run()
    unknown_task = project.invoke("tasks", "clear", run_id, "transfrom")
    assert unknown_task.exit_code == 2
    assert unknown_task.stderr.strip() == (
        f"error: DAG 'etl' (run {run_id!r}) has no task 'transfrom'; "
        "its tasks: extract, load, transform"
    )
    unknown_run = project.invoke("tasks", "clear", run_id[:-1] + "x", "transform")
    assert unknown_run.exit_code == 2
    assert f"did you mean {run_id!r}?" in unknown_run.stderr
    no_task = project.invoke("tasks", "clear", run_id)
    assert no_task.exit_code == 2 and "Missing argument 'TASK_ID...'" in no_task.stderr
    assert project.state_of(run_id) == "failed"


def test_without_a_daemon_a_queued_run_is_cancelled_in_the_store(project: Project) -> None:
    run_id = project.json("trigger", "etl")["run_id"]
    cancelled = project.ok("runs", "cancel", run_id)
    assert cancelled.stdout.strip() == (
        f"run {run_id} cancelled in the state directory (no daemon is running)"
    )
    assert project.state_of(run_id) == "cancelled"
    again = project.json("runs", "cancel", run_id)
    assert again == {"run_id": run_id, "via": "none", "cancelled": False, "was": "cancelled"}
    said = project.ok("runs", "cancel", run_id).stdout.strip()
    assert said == f"run {run_id} had already finished (cancelled): nothing to cancel"
    unknown = project.invoke("runs", "cancel", "no-such-run")
    assert unknown.exit_code == 2
    assert unknown.stderr.startswith("error: there is no run 'no-such-run'")


# -- with a daemon ------------------------------------------------------------------------------


def test_with_a_daemon_cancel_then_clear_runs_the_task_again(project: Project) -> None:
    with daemon(project):
        run_id = project.json("trigger", "stuck")["run_id"]
        wait_until(
            lambda: project.tasks(run_id).get("hang", {}).get("state") == "running",
            DEADLINE,
            "hang to run",
        )
        refused = project.invoke("tasks", "clear", run_id, "hang")
        assert refused.exit_code == 2
        assert refused.stderr.strip() == (
            f"error: cannot clear in run {run_id!r}: hang is running. "
            "Cancel the run or wait until those tasks finish, then clear again"
        )
        cancelled = project.ok("runs", "cancel", run_id)
        assert cancelled.stdout.strip() == (
            f"run {run_id} cancelled: the daemon is stopping its running tasks"
        )
        project.wait_for_state(run_id, "cancelled")
        project.fixed.touch()
        cleared = project.ok("tasks", "clear", run_id, "hang")
        assert cleared.stdout.splitlines() == [
            f"cleared 1 task instance of run {run_id}: hang",
            "the daemon runs them now",
        ]
        project.wait_for_state(run_id, "success")
        answer = project.json("tasks", "clear", run_id, "hang", "--no-downstream")
        assert (answer["via"], answer["cleared"]) == (
            "daemon",
            [{"task_id": "hang", "map_index": -1}],
        )
        project.wait_for_state(run_id, "success")
    assert project.tasks(run_id)["hang"]["try_number"] == 3
