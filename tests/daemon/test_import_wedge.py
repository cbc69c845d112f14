"""A real daemon beside DAG files that loop, sleep, exit, fork or leave a thread at import.

Before each file's import was checked in a subprocess, such a file wedged start-up (the daemon
never got ready), killed the daemon on reload (`os._exit`), or made SIGTERM hang. Here the
daemon gets ready, answers, reloads good files beside the bad ones, and stops on SIGTERM.
The import timeout is 2 s (`ORCHESTRATOR_DAG_IMPORT_TIMEOUT`) so the tests stay short.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from crashkit import DaemonProcess, new_marker, orphans, wait_until

from orchestrator.daemon.control import request_sync

pytestmark = pytest.mark.slow

LIMITS = {"ORCHESTRATOR_DAG_IMPORT_TIMEOUT": "2"}

GOOD = """
from orchestrator import DAG, task


@task
async def hello() -> str:  # async: runs in the daemon's own loop
    return "hello"


with DAG({dag_id!r}):
    hello()
"""

LOOP = "while True:\n    pass\n"
SLEEP = "import time\ntime.sleep(3600)\n"
EXIT = "import os\nos._exit(3)\n"
THREAD = "import threading, time\nthreading.Thread(target=time.sleep, args=(3600,)).start()\n"
FORK = "import os, time\nif os.fork() == 0:\n    time.sleep(3600)\n"


def dags_list(project: Path) -> dict[str, Any]:
    """`orchestrator dags list --json` in the project, as a user would run it beside the daemon."""
    done = subprocess.run(
        [sys.executable, "-m", "orchestrator", "dags", "list", "--json"],
        cwd=project,
        env={**os.environ, **LIMITS},
        capture_output=True,
        timeout=60,
        check=True,
    )
    listing: dict[str, Any] = json.loads(done.stdout)
    return listing


def reasons(listing: dict[str, Any]) -> dict[str, str]:
    return {Path(e["file"]).name: e["message"] for e in listing["import_errors"]}


def dag_count(daemon: DaemonProcess) -> int:
    reply = request_sync(daemon.socket_path, {"op": "ping"}, timeout=10)
    count: int = reply["dags"]
    return count


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "dags").mkdir()
    (tmp_path / "dags" / "good.py").write_text(GOOD.format(dag_id="good"))
    return tmp_path


def test_files_that_loop_sleep_fork_or_leave_a_thread_never_stop_the_daemon_starting(
    project: Path,
) -> None:
    dags = project / "dags"
    for name, source in {"loop": LOOP, "sleep": SLEEP, "thread": THREAD, "fork": FORK}.items():
        (dags / f"{name}.py").write_text(source)
    marker = new_marker()
    with DaemonProcess(project / "state", dags, marker=marker, env=LIMITS, cwd=project) as daemon:
        daemon.wait_ready(60)
        assert dag_count(daemon) == 1
        found = reasons(dags_list(project))
        daemon.terminate()
        assert daemon.wait_exit(30) == 0, daemon
    assert "import took longer than 2 s" in found["loop.py"]
    assert "import took longer than 2 s" in found["sleep.py"]
    assert "started a thread at import" in found["thread.py"]
    assert "forked the process at import" in found["fork.py"]
    wait_until(lambda: not orphans(marker), 10, "no process of the daemon's to be left")


def test_a_reloaded_file_that_exits_or_loops_leaves_the_daemon_up_and_reloading(
    project: Path,
) -> None:
    dags = project / "dags"
    marker = new_marker()
    with DaemonProcess(project / "state", dags, marker=marker, env=LIMITS, cwd=project) as daemon:
        daemon.wait_ready(60)
        (dags / "exits.py").write_text(EXIT)
        (dags / "loops.py").write_text(LOOP)
        wait_until(
            lambda: "loops.py" in daemon.log_text(), 30, f"the looping file to be refused, {daemon}"
        )
        wait_until(
            lambda: "exits.py" in daemon.log_text(), 30, f"the exiting file to be refused, {daemon}"
        )
        assert daemon.process.poll() is None, daemon
        assert dag_count(daemon) == 1
        (dags / "loops.py").write_text(GOOD.format(dag_id="fixed"))
        wait_until(lambda: dag_count(daemon) == 2, 30, "the fixed file to be loaded")
        (dags / "exits.py").unlink()
        (dags / "later.py").write_text(GOOD.format(dag_id="later"))
        wait_until(lambda: dag_count(daemon) == 3, 30, "a new file to be loaded after")
        daemon.terminate()
        assert daemon.wait_exit(30) == 0, daemon
    log = daemon.log_text()
    assert "the file exited the process (exit code 3)" in log
    assert "import took longer than 2 s" in log
    wait_until(lambda: not orphans(marker), 10, "no process of the daemon's to be left")


def test_a_check_running_when_the_daemon_is_killed_dies_with_it(project: Path) -> None:
    """The check runs in its own session (no signal to the daemon's group reaches it), so it
    must end when the daemon does, not when its own 60 s run out."""
    dags = project / "dags"
    (dags / "sleep.py").write_text(SLEEP)
    marker = new_marker()
    env = {"ORCHESTRATOR_DAG_IMPORT_TIMEOUT": "60"}
    with DaemonProcess(project / "state", dags, marker=marker, env=env, cwd=project) as daemon:
        wait_until(lambda: len(orphans(marker)) > 1, 30, "the import check to start")
        daemon.kill9()
        daemon.wait_exit(10)
    wait_until(lambda: not orphans(marker), 10, "the import check to end with the daemon")
