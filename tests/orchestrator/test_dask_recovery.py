"""The Dask executor when the cluster changes under it, and while tasks wait without a slot.

Each test starts its own cluster: a scheduler and workers as real processes (`dask scheduler`,
`dask worker`) on loopback, so the scheduler can be killed with SIGKILL and a new one started
at the same address; or a one-thread `LocalCluster`, where a task that held Dask's only thread
while it waits would stop everything else. Nothing sleeps: the tests wait on FIFOs, pidfds,
runs and store rows, under deadlines.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from daskkit import local_cluster
from taskjobs import open_fifo, read_fifo_line, wait_until_exited

from orchestrator.config import Settings
from orchestrator.loading.dagbag import load_dag_bag
from orchestrator.scheduling.engine import Engine
from orchestrator.state import RunState, TaskState

distributed = pytest.importorskip("distributed")

pytestmark = pytest.mark.slow

DASK = str(Path(sys.executable).with_name("dask"))
#: Dask's HTTP server on a free port: on its default (8787) it fails beside another cluster.
NO_DASHBOARD = ["--no-dashboard", "--dashboard-address", "127.0.0.1:0"]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class ProcessCluster:
    """`dask scheduler` and `dask worker` as processes at one fixed address."""

    def __init__(self, log: Path) -> None:
        self.address = f"tcp://127.0.0.1:{_free_port()}"
        self._log = log
        self.scheduler: subprocess.Popen[bytes] | None = None
        self.workers: list[subprocess.Popen[bytes]] = []

    def _start(self, *argv: str) -> subprocess.Popen[bytes]:
        with open(self._log, "ab") as log:
            return subprocess.Popen([DASK, *argv], stdout=log, stderr=log)

    def start_scheduler(self) -> None:
        port = self.address.rsplit(":", 1)[1]
        self.scheduler = self._start(
            "scheduler", "--host", "127.0.0.1", "--port", port, *NO_DASHBOARD
        )

    def start_worker(self) -> None:
        options = ["--nthreads", "1", "--host", "127.0.0.1", *NO_DASHBOARD]
        self.workers.append(self._start("worker", self.address, *options))

    def kill_scheduler(self) -> None:
        assert self.scheduler is not None
        self.scheduler.send_signal(signal.SIGKILL)
        self.scheduler.wait()

    async def wait_for_workers(self, count: int) -> None:
        """Return once the scheduler at the address has `count` workers."""
        from distributed import Client

        async with Client(
            self.address, asynchronous=True, timeout=30, set_as_default=False
        ) as client:
            await client.wait_for_workers(count, timeout=60)

    def close(self) -> None:
        for process in [*self.workers, *([self.scheduler] if self.scheduler else [])]:
            if process.poll() is None:
                process.terminate()
        for process in [*self.workers, *([self.scheduler] if self.scheduler else [])]:
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.fixture
def process_cluster(tmp_path: Path) -> Iterator[ProcessCluster]:
    cluster = ProcessCluster(tmp_path / "dask.log")
    try:
        yield cluster
    finally:
        cluster.close()


def _settings(tmp_path: Path, address: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "state_dir": tmp_path / "state",
        "dags_folder": tmp_path / "dags",
        "slots": 4,
        "executor": "dask",
        "dask_address": address,
        "api_port": 0,
    }
    return Settings(**{**values, **overrides})


def _dags(tmp_path: Path, name: str, source: str) -> Path:
    dags = tmp_path / "dags"
    dags.mkdir(exist_ok=True)
    (dags / name).write_text(textwrap.dedent(source))
    return dags


async def _until_async(condition: Callable[[], Any]) -> None:
    while not await condition():  # noqa: ASYNC110 - store rows: see `_until`
        await anyio.sleep(0.02)


LOST_WITH_THE_SCHEDULER = """
import os, threading
from pathlib import Path
from orchestrator import DAG, task

MARKER = Path({marker!r})

@task(retries=1, retry_delay=0)
def long():
    if not MARKER.exists():
        MARKER.write_text("first")
        with open({fifo!r}, "w") as pipe:
            pipe.write(f"{{os.getpid()}}\\n")
        threading.Event().wait()
    return os.getppid()

with DAG("lost"):
    long()
"""


async def test_a_killed_scheduler_loses_the_try_and_the_run_finishes_on_a_new_cluster(
    tmp_path: Path, process_cluster: ProcessCluster
) -> None:
    process_cluster.start_scheduler()
    process_cluster.start_worker()
    source = LOST_WITH_THE_SCHEDULER.format(
        marker=str(tmp_path / "marker"), fifo=str(tmp_path / "pid")
    )
    dags = _dags(tmp_path, "lost.py", source)
    fifo = open_fifo(tmp_path / "pid")
    settings = _settings(tmp_path, process_cluster.address)
    with anyio.fail_after(120):
        await process_cluster.wait_for_workers(1)
        async with Engine.open(settings, dagbag=load_dag_bag(dags)) as engine:
            run_id = await engine.trigger("lost")
            pidfd = os.pidfd_open(int(await read_fifo_line(fifo)))
            process_cluster.kill_scheduler()  # mid-try
            await wait_until_exited(pidfd)  # the try's process does not outlive its worker
            os.close(pidfd)
            process_cluster.start_scheduler()  # a new cluster at the same address
            process_cluster.start_worker()
            record = await engine.wait(run_id)
            tries = await engine.store.list_tries(record.run_id, "long")
            results = await engine.store.get_results(record.run_id)
    assert record.state is RunState.SUCCESS
    assert [t.state for t in tries] == [TaskState.UP_FOR_RETRY, TaskState.SUCCESS]
    assert "lost: the Dask worker or scheduler went away" in (tries[0].error or "")
    assert json.loads(results[("long", -1)]) != os.getpid()  # below a Dask worker


WAITS_WITHOUT_A_SLOT = """
import os
from datetime import datetime
from airflow import DAG
from airflow.operators.python import PythonOperator
from airflow.sensors.filesystem import FileSensor

with DAG("waits", schedule=None, start_date=datetime(2024, 1, 1)):
    landed = FileSensor(task_id="landed", filepath={path!r}, poke_interval=30, timeout=600)
    process = PythonOperator(
        task_id="process",
        python_callable=lambda: [open({path!r}).read().strip(), os.getppid()],
    )
    busy = PythonOperator(task_id="busy", python_callable=os.getppid)
    landed >> process
"""


@pytest.fixture
def one_thread_cluster() -> Iterator[Any]:
    with local_cluster(workers=1) as cluster:
        yield cluster


async def test_a_deferred_sensor_holds_no_dask_slot_while_it_waits(
    tmp_path: Path, one_thread_cluster: Any
) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    dags = _dags(tmp_path, "waits.py", WAITS_WITHOUT_A_SLOT.format(path=str(inbox / "orders.csv")))
    settings = _settings(tmp_path, one_thread_cluster.scheduler_address)
    async with Engine.open(settings, dagbag=load_dag_bag(dags)) as engine:
        with anyio.fail_after(60):
            run_id = await engine.trigger("waits")

            async def states() -> dict[str, TaskState]:
                rows = await engine.store.list_task_instances(run_id)
                return {row.task_id: row.state for row in rows}

            async def busy_done_while_landed_waits() -> bool:
                now = await states()
                return now.get("busy") is TaskState.SUCCESS and (
                    now.get("landed") is TaskState.DEFERRED
                )

            await _until_async(busy_done_while_landed_waits)
            staging = tmp_path / "orders.part"
            staging.write_text("42\n")
            staging.rename(inbox / "orders.csv")
            record = await engine.wait(run_id)
        results = await engine.store.get_results(run_id)
    assert record.state is RunState.SUCCESS
    busy_pid = json.loads(results[("busy", -1)])
    text, process_pid = json.loads(results[("process", -1)])
    assert text == "42" and process_pid == busy_pid != os.getpid()  # on the Dask worker
    # Tries on Dask open their log before they begin: no mark in this machine's journal
    assert (settings.state_dir / "begun-tries").read_text() == ""
