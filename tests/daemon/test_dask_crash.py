"""The crash harness with the Dask executor: the daemon killed with -9 mid-run, then restarted.

The cluster (a `LocalCluster` of this test's) outlives the daemon, so the try the daemon was
waiting for still runs on a worker when the daemon dies. The restarted daemon's reconcile stops
it before its own copy of the try runs: the same invariants as with the local pool hold (one
run per event, no double success, everything finished), and no task process is left on the
workers.
"""

from __future__ import annotations

import os
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from crashkit import DaemonProcess, check_invariants, new_marker, orphans, store_rows, wait_until
from daskkit import local_cluster
from taskjobs import is_running

distributed = pytest.importorskip("distributed")

pytestmark = pytest.mark.slow

DAG_FILE = """
import os
import time
from pathlib import Path
from orchestrator import DAG, get_current_context, task
from triggers import FileTrigger


@task(retries=0)  # the kill costs no retry: the try runs again as interrupted
def measure() -> int:
    context = get_current_context()
    path = context.conf["path"]
    pid_file = Path({pids!r}) / f"{{os.path.basename(path)}}-{{context.try_number}}"
    pid_file.write_text(str(os.getpid()))
    if os.path.basename(path).startswith("slow") and context.try_number == 1:
        time.sleep(600)
    return os.path.getsize(path)


with DAG("land", run_on=FileTrigger(directory={incoming!r}, pattern="*.csv")):
    measure()
"""


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    with local_cluster(2) as cluster:
        yield cluster


def _land(project: Path, name: str) -> None:
    staging = project / f".{name}.part"
    staging.write_text("a,b\n1,2\n")
    os.replace(staging, project / "incoming" / name)


def _settled(state_dir: Path, count: int) -> bool:
    rows = store_rows(state_dir, "SELECT runs.state FROM events LEFT JOIN runs USING (run_id)")
    return len(rows) == count and all(state in ("success", "failed") for (state,) in rows)


def test_a_kill_9_mid_run_on_dask_loses_nothing_and_leaves_nothing_running(
    tmp_path: Path, cluster: Any
) -> None:
    for folder in ("incoming", "dags", "pids"):
        (tmp_path / folder).mkdir()
    source = DAG_FILE.format(pids=str(tmp_path / "pids"), incoming=str(tmp_path / "incoming"))
    (tmp_path / "dags" / "pipelines.py").write_text(textwrap.dedent(source))
    state_dir, marker = tmp_path / "state", new_marker()
    dask = ["--executor", "dask", "--dask-address", cluster.scheduler_address]
    with DaemonProcess(state_dir, tmp_path / "dags", marker=marker, extra_args=dask) as daemon:
        daemon.wait_ready(60)
        for name in ("slow-1.csv", "batch-2.csv", "batch-3.csv"):
            _land(tmp_path, name)
        pid_file = tmp_path / "pids" / "slow-1.csv-1"
        wait_until(pid_file.exists, 60, f"the slow try to start on Dask, {daemon}")
        daemon.kill9()
        daemon.wait_exit(30)
    slow_pid = int(pid_file.read_text())
    assert is_running(slow_pid)  # the daemon is gone; its try still runs on the worker
    with DaemonProcess(state_dir, tmp_path / "dags", marker=marker, extra_args=dask) as daemon:
        daemon.wait_ready(60)
        wait_until(lambda: _settled(state_dir, 3), 60, f"3 runs to finish, {daemon}")
        daemon.terminate()
        assert daemon.wait_exit(30) == 0, daemon.log_text()
    assert check_invariants(state_dir / "orchestrator.db", settled=True) == []
    runs = store_rows(state_dir, "SELECT state FROM runs WHERE dag_id = 'land'")
    assert runs == [("success",)] * 3
    # Stopped by the reconcile (the workers' processes of ours that ran the others live on,
    # idle, for the next tries).
    assert not is_running(slow_pid)
    wait_until(lambda: not orphans(marker), 15, "no process of the daemon's left")
    from distributed import Client

    from orchestrator.execution import dask_worker

    with Client(cluster.scheduler_address, set_as_default=False) as client:
        running = client.run(lambda: len(dask_worker._running))
    assert set(running.values()) == {0}
