"""The crash harness: the daemon as a real process, killed at its worst moments, then restarted.

Each test kills the daemon (at a named crash point, with `kill -9` at moments the test picks,
or by SIGTERM), starts it again on the same state directory, lets it settle, and checks the
invariants users rely on (see `crashkit.check_invariants`): the store is sound, every event
has exactly one run, no task instance recorded two successes, every run ended, and no worker
or task process outlived its daemon.

Bounded for CI (a few seconds each); `make soak` runs the random-kill test for longer.
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from crashkit import DaemonProcess, check_invariants, new_marker, orphans, wait_until

pytestmark = pytest.mark.slow

DAG_FILE = '''
import os
import time
from orchestrator import DAG, get_current_context, task
from triggers import FileTrigger

INCOMING = {incoming!r}


@task(retries=0)  # a kill -9 while it runs costs no retry
def measure() -> int:
    """Runs in a worker process; the first try of a `slow-*` file sleeps (grace tests)."""
    context = get_current_context()
    path = context.conf["path"]
    if os.path.basename(path).startswith("slow") and context.try_number == 1:
        time.sleep(600)
    return os.path.getsize(path)


@task(in_process=True)
def report(size: int) -> int:
    return size * 2


with DAG("land", run_on=FileTrigger(directory=INCOMING, pattern="*.csv"), max_active_runs=4):
    report(measure())
'''

TICK_FILE = """
from orchestrator import DAG, task


@task(in_process=True, retries=1, retry_delay=0)  # the kill lands while it runs
def hello() -> int:
    return 1


with DAG("tick", schedule="@hourly"):
    hello()
"""


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Path]:
    (tmp_path / "incoming").mkdir()
    (tmp_path / "dags").mkdir()
    text = textwrap.dedent(DAG_FILE).format(incoming=str(tmp_path / "incoming"))
    (tmp_path / "dags" / "pipelines.py").write_text(text)
    yield tmp_path


def land(project: Path, name: str, content: str = "a,b\n1,2\n") -> None:
    """A file lands whole: written beside the folder, then renamed into it."""
    staging = project / f".{name}.part"
    staging.write_text(content)
    os.replace(staging, project / "incoming" / name)


def query(project: Path, sql: str) -> list[tuple[object, ...]]:
    database = project / "state" / "orchestrator.db"
    if not database.exists():
        return []
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=5) as connection:
        return list(connection.execute(sql))


def settled_event_runs(project: Path, count: int) -> bool:
    """`count` events, each with a run that has finished."""
    rows = query(
        project,
        "SELECT runs.state FROM events LEFT JOIN runs ON runs.run_id = events.run_id"
        " WHERE events.dag_id = 'land'",
    )
    return len(rows) == count and all(state in ("success", "failed") for (state,) in rows)


def rounds() -> int:
    return int(os.environ.get("CRASH_ROUNDS", "3"))


def daemon(project: Path, marker: str, **options: object) -> DaemonProcess:
    # These tests are a crash loop from outside: a try may be cut short by every kill, which
    # `max_interrupted_tries` would blame on the task. It is raised above the number of kills,
    # so that any try a kill cost (retries=0) would show as a failed run.
    env = {"ORCHESTRATOR_MAX_INTERRUPTED_TRIES": str(rounds() + 2)}
    return DaemonProcess(project / "state", project / "dags", marker=marker, env=env, **options)  # type: ignore[arg-type]


def restart_and_settle(project: Path, marker: str, files: int) -> None:
    with daemon(project, marker) as process:
        process.wait_ready(30)
        wait_until(lambda: settled_event_runs(project, files), 60, f"{files} runs, {process}")
        process.terminate()
        assert process.wait_exit(30) == 0, process.log_text()


def assert_sound(project: Path, marker: str, files: int) -> None:
    problems = check_invariants(project / "state" / "orchestrator.db", settled=True)
    assert problems == []
    (events,) = query(project, "SELECT count(*) FROM events WHERE dag_id = 'land'")
    (runs,) = query(project, "SELECT count(*) FROM runs WHERE dag_id = 'land'")
    assert events == runs == (files,)
    successes = query(
        project, "SELECT count(*) FROM runs WHERE dag_id = 'land' AND state = 'success'"
    )
    assert successes == [(files,)]
    wait_until(lambda: not orphans(marker), 15, "no worker or task process left behind")


@pytest.mark.parametrize(
    "point",
    ["event_received", "run_committed", "task_dispatched", "task_succeeded", "success_committed"],
)
def test_a_kill_at_each_crash_point_loses_nothing_and_doubles_nothing(
    project: Path, point: str
) -> None:
    marker = new_marker()
    with daemon(project, marker, crash_at=point) as process:
        process.wait_ready(30)
        for index in range(3):
            land(project, f"batch-{index}.csv")
        assert process.wait_exit(60) == -signal.SIGKILL, process.log_text()
    restart_and_settle(project, marker, files=3)
    assert_sound(project, marker, files=3)


def test_a_kill_after_a_schedule_tick_commits_does_not_run_the_tick_twice(project: Path) -> None:
    (project / "dags" / "pipelines.py").write_text(TICK_FILE)
    marker = new_marker()
    with daemon(project, marker, crash_at="schedule_tick") as process:
        assert process.wait_exit(60) == -signal.SIGKILL, process.log_text()
    with daemon(project, marker) as process:
        process.wait_ready(30)
        wait_until(
            lambda: (
                query(project, "SELECT state FROM runs WHERE dag_id = 'tick'") == [("success",)]
            ),
            60,
            f"the tick's one run to succeed, {process}",
        )
        process.terminate()
        assert process.wait_exit(30) == 0, process.log_text()
    assert query(project, "SELECT count(*) FROM runs WHERE dag_id = 'tick'") == [(1,)]
    assert check_invariants(project / "state" / "orchestrator.db", settled=True) == []


def crash_seed(capsys: pytest.CaptureFixture[str]) -> str:
    """`CRASH_SEED`, or a fresh one; printed past pytest's capture, so any run can be replayed."""
    seed = os.environ.get("CRASH_SEED") or str(random.SystemRandom().randrange(1_000_000))
    with capsys.disabled():
        print(f"\nrandom kill -9 test: CRASH_SEED={seed} (set it to replay this run)")
    return seed


def test_random_kill_9_while_files_land(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Killed at moments chosen by how far it got (3 rounds of 10 files; `make soak`: 30).

    A fresh seed each run (so CI tries a new one every time) unless `CRASH_SEED` is set.
    """
    marker = new_marker()
    chooser = random.Random(crash_seed(capsys))
    landed = 0
    for round_number in range(rounds()):
        with daemon(project, marker) as process:
            process.wait_ready(30)
            for _ in range(10):
                land(project, f"batch-{landed}.csv", "x" * chooser.randint(1, 100))
                landed += 1
            goal = chooser.randint(landed - 10, landed)
            wait_until(
                lambda goal=goal: (
                    len(query(project, "SELECT 1 FROM runs WHERE dag_id = 'land'")) >= goal
                ),
                60,
                f"{goal} runs before kill {round_number}, {process}",
            )
            process.kill9()
            process.wait_exit(30)
        problems = check_invariants(project / "state" / "orchestrator.db", settled=False)
        assert problems == []
    restart_and_settle(project, marker, files=landed)
    assert_sound(project, marker, files=landed)


def test_sigterm_lets_a_long_task_go_then_records_it_to_run_again(project: Path) -> None:
    marker = new_marker()
    grace = ["--shutdown-grace", "0.5"]
    with daemon(project, marker, extra_args=grace) as process:
        process.wait_ready(30)
        land(project, "slow-1.csv")
        wait_until(
            lambda: query(project, "SELECT 1 FROM task_tries WHERE task_id = 'measure'"),
            60,
            f"the slow task to start, {process}",
        )
        process.terminate()
        assert process.wait_exit(30) == 0, process.log_text()
    tries = query(project, "SELECT state, error FROM task_tries WHERE task_id = 'measure'")
    assert tries == [("failed", "interrupted: the daemon stopped and its grace period ended")]
    wait_until(lambda: not orphans(marker), 15, "the killed task's worker to be gone")
    restart_and_settle(project, marker, files=1)
    states = query(
        project, "SELECT state FROM task_tries WHERE task_id = 'measure' ORDER BY try_number"
    )
    assert states == [("failed",), ("success",)]  # the second try did not sleep
    assert_sound(project, marker, files=1)


def test_a_kill_during_the_grace_period_is_recovered_like_any_crash(project: Path) -> None:
    marker = new_marker()
    options = {"crash_at": "shutdown_grace", "extra_args": ["--shutdown-grace", "0.2"]}
    with daemon(project, marker, **options) as process:
        process.wait_ready(30)
        land(project, "slow-1.csv")
        wait_until(
            lambda: query(project, "SELECT 1 FROM task_tries WHERE task_id = 'measure'"),
            60,
            f"the slow task to start, {process}",
        )
        process.terminate()
        assert process.wait_exit(30) == -signal.SIGKILL, process.log_text()
    restart_and_settle(project, marker, files=1)
    assert_sound(project, marker, files=1)


def test_a_second_daemon_on_the_same_state_directory_is_refused(project: Path) -> None:
    marker = new_marker()
    with daemon(project, marker) as first:
        first.wait_ready(30)
        second = daemon(project, marker, log_path=project / "second.log")
        with second:
            assert second.wait_exit(30) != 0
            assert f"pid {first.pid}" in second.log_text()
        assert first.process.poll() is None  # the first one goes on
        first.terminate()
        assert first.wait_exit(30) == 0
