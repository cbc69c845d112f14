"""A full disk holds the daemon back without killing it; it goes on by itself when space returns.

The state directory is a real 8 MiB tmpfs (mounting needs root: skipped otherwise), filled to
the last byte by a file the test then removes.
"""

from __future__ import annotations

import json
import os
import sqlite3
import textwrap
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from crashkit import DaemonProcess, api_url, check_invariants, new_marker, wait_until
from diskkit import fill, small_tmpfs

pytestmark = pytest.mark.slow

LOG_CAP = 65536

DAG_FILE = """
from orchestrator import DAG, get_current_context, task
from triggers import FileTrigger


@task
def chatty() -> int:
    for line in range(40_000):  # about 1.3 MB of log, far over the cap
        print(f"line {{line:06}} of the chatty task's output")
    return len(get_current_context().conf["path"])


with DAG("land", run_on=FileTrigger(directory={incoming!r}, pattern="*.csv")):
    chatty()
"""


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    with small_tmpfs(tmp_path / "state", "8m") as mount_point:
        yield mount_point


def _health(url: str) -> tuple[int, dict[str, object]]:
    try:
        with urllib.request.urlopen(f"{url}/api/v1/health", timeout=5) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def _runs(state: Path, finished: bool) -> int:
    with sqlite3.connect(f"file:{state / 'orchestrator.db'}?mode=ro", uri=True) as connection:
        sql = (
            "SELECT count(*) FROM runs WHERE state = 'success'"
            if finished
            else ("SELECT count(*) FROM runs")
        )
        return int(connection.execute(sql).fetchone()[0])


def test_a_full_disk_pauses_the_daemon_and_it_resumes_when_space_returns(
    tmp_path: Path, small_disk: Path
) -> None:
    incoming, dags = tmp_path / "incoming", tmp_path / "dags"
    incoming.mkdir()
    dags.mkdir()
    (dags / "land.py").write_text(textwrap.dedent(DAG_FILE).format(incoming=str(incoming)))
    env = {"ORCHESTRATOR_TASK_LOG_MAX_BYTES": str(LOG_CAP)}
    with DaemonProcess(small_disk, dags, marker=new_marker(), env=env) as daemon:
        url = api_url(daemon)  # asked before the disk fills: the API may log it after ready
        filler = fill(small_disk)
        for index in range(5):
            (tmp_path / "x.csv").write_text(f"{index}\n" * 1000)
            os.replace(tmp_path / "x.csv", incoming / f"batch-{index}.csv")
        wait_until(lambda: _health(url)[0] == 503, 60, f"disk_full, {daemon}")
        _, body = _health(url)
        assert body["status"] == "disk_full"
        assert "the disk is full: no task is dispatched" in daemon.log_text()
        assert daemon.process.poll() is None  # up, waiting

        filler.unlink()
        wait_until(lambda: _runs(small_disk, finished=True) == 5, 120, f"5 runs, {daemon}")
        assert _health(url)[0] == 200 and _health(url)[1]["status"] == "ok"
        assert "the disk has room again" in daemon.log_text()
        daemon.terminate()
        assert daemon.wait_exit(30) == 0, daemon.log_text()
    assert _runs(small_disk, finished=False) == 5
    assert check_invariants(small_disk / "orchestrator.db", settled=True) == []
    logs = list((small_disk / "logs").rglob("*.log"))
    assert len(logs) == 5
    for log in logs:
        text = log.read_text()
        assert len(log.read_bytes()) <= LOG_CAP
        assert "line 000000 " in text and "line 039999 " in text  # head and tail kept
        assert "bytes cut here: the log was over task_log_max_bytes (65536)" in text


LATER_DAG = """
from orchestrator import DAG, task


@task
def hello() -> str:
    return "hello"


# A large description: its commit needs new pages in the write-ahead log. A small one may fit in
# the room an earlier, checkpointed commit left there, and commit even with the disk full.
with DAG("later", description="x" * 1_500_000):
    hello()
"""


def _dag_ids(state: Path) -> set[str]:
    with sqlite3.connect(f"file:{state / 'orchestrator.db'}?mode=ro", uri=True) as connection:
        return {str(row[0]) for row in connection.execute("SELECT dag_id FROM dags")}


def test_a_dag_file_changed_while_the_disk_is_full_is_recorded_once_space_returns(
    tmp_path: Path, small_disk: Path
) -> None:
    """A reload commits outside the engine's step: it must wait out a full disk as a step
    does, not fail the daemon (or lose the new DAG)."""
    incoming, dags = tmp_path / "incoming", tmp_path / "dags"
    incoming.mkdir()
    dags.mkdir()
    (dags / "land.py").write_text(textwrap.dedent(DAG_FILE).format(incoming=str(incoming)))
    with DaemonProcess(small_disk, dags, marker=new_marker()) as daemon:
        daemon.wait_ready(60)
        filler = fill(small_disk)
        (dags / "later.py").write_text(textwrap.dedent(LATER_DAG))
        wait_until(lambda: "the disk is full" in daemon.log_text(), 60, f"disk full, {daemon}")
        assert daemon.process.poll() is None, daemon.log_text()  # up, waiting

        filler.unlink()
        wait_until(lambda: "later" in _dag_ids(small_disk), 60, f"DAG later, {daemon}")
        assert daemon.process.poll() is None, daemon.log_text()
        daemon.terminate()
        assert daemon.wait_exit(30) == 0, daemon.log_text()
    assert check_invariants(small_disk / "orchestrator.db", settled=True) == []
