"""A `-wal` file deleted after a `kill -9` is refused at the next start, with the way out."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from crashkit import DaemonProcess, new_marker

pytestmark = pytest.mark.slow

DAG_FILE = """
from orchestrator import DAG, task
from triggers import FileTrigger


@task(in_process=True)
def noop() -> int:
    return 1


with DAG("land", run_on=FileTrigger(directory={incoming!r}, pattern="*.csv")):
    noop()
"""


def test_a_restart_after_the_wal_was_deleted_refuses_with_the_recovery_steps(
    tmp_path: Path,
) -> None:
    incoming, dags, state = tmp_path / "incoming", tmp_path / "dags", tmp_path / "state"
    incoming.mkdir()
    dags.mkdir()
    (dags / "land.py").write_text(DAG_FILE.format(incoming=str(incoming)))
    marker = new_marker()
    # The daemon kills itself right after the event's run commits: it is in the -wal only.
    with DaemonProcess(state, dags, marker=marker, crash_at="run_committed") as process:
        process.wait_ready(30)
        (tmp_path / "batch.csv").write_text("a\n1\n")
        os.replace(tmp_path / "batch.csv", incoming / "batch.csv")
        assert process.wait_exit(30) == -9, process.log_text()
    wal = state / "orchestrator.db-wal"
    assert wal.stat().st_size > 0
    wal.unlink()

    with DaemonProcess(state, dags, marker=marker) as process:
        code = process.wait_exit(30)
        log = process.log_text()
    assert code != 0, log
    assert f"its write-ahead log {wal} is missing" in log
    assert f"rm {state / 'orchestrator.db-walmark'}" in log
    assert not wal.exists()  # nothing was created that would hide the loss next time

    check = subprocess.run(
        [sys.executable, "-m", "orchestrator", "db", "check", "--state-dir", str(state)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert check.returncode != 0
    assert "is missing" in check.stdout + check.stderr
