"""Tries cut short by the daemon's death: nothing of them runs on, and they cost no retry.

Each test runs the daemon as a real process, kills it (`kill -9`, or a task that kills it),
starts it again on the same state directory and looks at what the tasks saw: a try of a task
never runs beside a leftover of an earlier try (contract 1), an interrupted try is run again
without using one of the task's retries, and a task that kills the daemon every time ends
failed after `max_interrupted_tries` rather than crash-looping it.
"""

from __future__ import annotations

import signal
import textwrap
from pathlib import Path

import pytest
from crashkit import DaemonProcess, new_marker, orphans, store_rows, wait_until

from orchestrator.daemon.control import control_path, request_sync

pytestmark = pytest.mark.slow

# Try 1 starts three `sleep` children (one in its process group, one in a session of its own,
# one double-forked so that it has no parent), each writing its pid once in place, and hangs;
# a later try only says how many of the earlier children were still alive when it started.
CHILDREN_DAG = '''
from orchestrator import DAG, Shell

FOLDER = {folder!r}
COMMAND = f"""
alive=0
for pid in $(cat {{FOLDER}}/pids 2>/dev/null); do
    if [ -d /proc/$pid ] && ! grep -q '^State:.*Z' /proc/$pid/status; then alive=$((alive+1)); fi
done
echo "start $ORCHESTRATOR_TRY_NUMBER alive=$alive" >> {{FOLDER}}/lines
if [ "$ORCHESTRATOR_TRY_NUMBER" = 1 ]; then
    touch {{FOLDER}}/pids
    sh -c 'echo $$ >> {{FOLDER}}/pids; exec sleep 3601' >/dev/null 2>&1 &
    setsid sh -c 'echo $$ >> {{FOLDER}}/pids; exec sleep 3602' >/dev/null 2>&1 &
    (sh -c 'echo $$ >> {{FOLDER}}/pids; exec sleep 3603' >/dev/null 2>&1 &)
    until [ "$(wc -l < {{FOLDER}}/pids)" -ge 3 ]; do sleep 0.01; done
    echo ready >> {{FOLDER}}/lines
    sleep 3604
fi
echo end
"""

with DAG("children"):
    Shell(COMMAND, task_id="spawn", retries=1)
'''

# Sleeps on its first try only; no retries, so only a free re-run can make the run succeed.
SLEEPER_DAG = """
import time
from orchestrator import DAG, get_current_context, task


@task(retries=0)
def nap() -> int:
    if get_current_context().try_number == 1:
        time.sleep(3600)
    return 1


with DAG("sleeper"):
    nap()
"""

# Kills the daemon (its worker's parent) on every try.
KILLER_DAG = """
import os
import signal
from orchestrator import DAG, task


@task(retries=0)
def kill_daemon() -> None:
    os.kill(os.getppid(), signal.SIGKILL)


with DAG("killer"):
    kill_daemon()
"""


def write_dag(folder: Path, text: str) -> None:
    (folder / "dags").mkdir(exist_ok=True)
    (folder / "dags" / "pipeline.py").write_text(textwrap.dedent(text))


def start(project: Path, marker: str, *extra: str) -> DaemonProcess:
    return DaemonProcess(project / "state", project / "dags", marker=marker, extra_args=extra)


def trigger(daemon: DaemonProcess, dag_id: str) -> str:
    daemon.wait_ready(30)
    request = {"op": "trigger", "dag_id": dag_id, "conf": {}, "dedup_key": None}
    return str(request_sync(control_path(daemon.state_dir), request)["run_id"])


def run_state(project: Path, run_id: str) -> str:
    rows = store_rows(project / "state", f"SELECT state FROM runs WHERE run_id = '{run_id}'")
    return str(rows[0][0]) if rows else ""


def tries(project: Path, task_id: str) -> list[tuple[object, ...]]:
    return store_rows(
        project / "state",
        f"SELECT try_number, state, error FROM task_tries WHERE task_id = '{task_id}'"
        " ORDER BY try_number",
    )


def lines(project: Path) -> list[str]:
    path = project / "lines"
    return path.read_text().splitlines() if path.exists() else []


def settle(project: Path, marker: str, run_id: str) -> str:
    """Start the daemon again, wait for the run to end, stop the daemon; the run's state."""
    with start(project, marker) as daemon:
        daemon.wait_ready(30)
        wait_until(
            lambda: run_state(project, run_id) in ("success", "failed"), 60, f"the run, {daemon}"
        )
        daemon.terminate()
        assert daemon.wait_exit(30) == 0, daemon.log_text()
    return run_state(project, run_id)


def test_no_child_of_a_killed_daemons_try_runs_when_the_task_runs_again(tmp_path: Path) -> None:
    write_dag(tmp_path, CHILDREN_DAG.format(folder=str(tmp_path)))
    marker = new_marker()
    with start(tmp_path, marker) as daemon:
        run_id = trigger(daemon, "children")
        wait_until(lambda: "ready" in lines(tmp_path), 60, f"try 1's children, {daemon}")
        daemon.kill9()
        daemon.wait_exit(30)
    assert settle(tmp_path, marker, run_id) == "success"
    # The second try started once all three children of the first were gone.
    assert lines(tmp_path) == ["start 1 alive=0", "ready", "start 2 alive=0"]
    wait_until(lambda: not orphans(marker), 15, "no process of the daemon's to be left")


def test_a_daemon_stop_kills_the_children_a_try_moved_out_of_its_group(tmp_path: Path) -> None:
    write_dag(tmp_path, CHILDREN_DAG.format(folder=str(tmp_path)))
    marker = new_marker()
    with start(tmp_path, marker, "--shutdown-grace", "0.2") as daemon:
        trigger(daemon, "children")
        wait_until(lambda: "ready" in lines(tmp_path), 60, f"try 1's children, {daemon}")
        daemon.terminate()
        assert daemon.wait_exit(30) == 0, daemon.log_text()
    wait_until(lambda: not orphans(marker), 15, "the try's setsid and double-forked children")


def test_a_try_cut_short_by_a_kill_9_is_run_again_without_using_a_retry(tmp_path: Path) -> None:
    write_dag(tmp_path, SLEEPER_DAG)
    marker = new_marker()
    with start(tmp_path, marker) as daemon:
        run_id = trigger(daemon, "sleeper")
        wait_until(lambda: tries(tmp_path, "nap"), 60, f"the first try, {daemon}")
        daemon.kill9()
        daemon.wait_exit(30)
    assert settle(tmp_path, marker, run_id) == "success"
    (first, second) = tries(tmp_path, "nap")
    assert first[:2] == (1, "failed")
    assert "daemon stopped" in str(first[2])
    assert second == (2, "success", None)


@pytest.mark.parametrize("in_process", [False, True], ids=["worker", "thread"])
def test_a_task_that_kills_the_daemon_each_time_fails_after_max_interrupted_tries(
    tmp_path: Path, in_process: bool
) -> None:
    # Quiet: each try is counted by its mark in `begun-tries`, made by its worker or thread.
    killer = KILLER_DAG.replace("os.getppid()", "os.getpid()") if in_process else KILLER_DAG
    write_dag(tmp_path, killer.replace("retries=0", f"retries=0, in_process={in_process}"))
    marker = new_marker()
    with start(tmp_path, marker) as daemon:
        run_id = trigger(daemon, "killer")
        assert daemon.wait_exit(60) == -signal.SIGKILL, daemon.log_text()
    kills = 1
    for _ in range(5):  # bounded: a crash loop fails the test instead of hanging it
        with start(tmp_path, marker) as daemon:
            wait_until(
                lambda: (
                    daemon.process.poll() is not None
                    or run_state(tmp_path, run_id) in ("success", "failed")
                ),
                60,
                f"a kill or the run's end, {daemon}",
            )
            if daemon.process.poll() is None:
                daemon.terminate()
                assert daemon.wait_exit(30) == 0, daemon.log_text()
                break
            kills += 1
    assert kills == 3  # the default max_interrupted_tries
    assert run_state(tmp_path, run_id) == "failed"
    *_, last = tries(tmp_path, "kill_daemon")
    assert last[:2] == (3, "failed")
    assert "max_interrupted_tries" in str(last[2])


# Quiet: its try leaves no log, only its mark in `begun-tries` once its code begins.
ONCE_DAG = """
from orchestrator import DAG, task


@task(retries=0)
def once() -> int:
    return 1


with DAG("once"):
    once()
"""


def test_a_try_the_daemon_died_before_starting_does_not_count_as_interrupted(
    tmp_path: Path,
) -> None:
    # Killed after the try's start was committed, before its worker got the job: no mark.
    write_dag(tmp_path, ONCE_DAG)
    marker = new_marker()
    env = {"ORCHESTRATOR_MAX_INTERRUPTED_TRIES": "1"}  # one counted interruption fails it
    state, dags = tmp_path / "state", tmp_path / "dags"
    with DaemonProcess(state, dags, marker=marker, crash_at="task_dispatched", env=env) as daemon:
        run_id = trigger(daemon, "once")
        assert daemon.wait_exit(60) == -signal.SIGKILL, daemon.log_text()
    assert run_state(tmp_path, run_id) == "running"
    with DaemonProcess(state, dags, marker=marker, env=env) as daemon:
        daemon.wait_ready(30)
        wait_until(lambda: run_state(tmp_path, run_id) == "success", 60, f"the run, {daemon}")
        daemon.terminate()
        assert daemon.wait_exit(30) == 0, daemon.log_text()
    (interrupted, ran) = tries(tmp_path, "once")
    assert interrupted[1:] == ("failed", "interrupted: the daemon stopped while this try ran")
    assert ran[1:] == ("success", None)
