"""The Dask executor on a real cluster: two worker processes on loopback, one with a GPU.

One cluster serves the module (its own event loop, in a thread); each test opens our
executor (or an engine) on it in the test's loop. Nothing sleeps: tests wait on FIFOs,
pidfds and outcomes, under deadlines.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import socket
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from taskjobs import DagFile, open_fifo, read_fifo_line, wait_until_exited

from orchestrator.config import Settings
from orchestrator.execution import dask_connection
from orchestrator.execution.dask_executor import DaskExecutor
from orchestrator.execution.jobs import Outcome, TaskOutcome
from orchestrator.loading.dagbag import load_dag_bag
from orchestrator.scheduling.engine import Engine
from orchestrator.state import RunState, TaskState

distributed = pytest.importorskip("distributed")

pytestmark = pytest.mark.slow

TASKS = """
@task
def where(i):
    print(f"hello from {i}", flush=True)
    return {"worker_pid": os.getppid(), "i": i}

@task
def hang(fifo):
    print("started", flush=True)
    with open(fifo, "w") as pipe:
        pipe.write(f"{os.getpid()}\\n")
    threading.Event().wait()

@task
def gpu(i):
    start = time.monotonic()
    time.sleep(0.05)
    return {"worker_pid": os.getppid(), "start": start, "end": time.monotonic()}

@task
def unstorable():
    return object()
"""


#: Dask's HTTP server on a free port: on its default (8787) it fails beside another cluster.
NO_DASHBOARD = {"host": "127.0.0.1", "dashboard": False, "dashboard_address": "127.0.0.1:0"}


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    """Two single-thread worker processes; the second offers GPU=1."""
    from distributed import Nanny, Scheduler, SpecCluster

    def worker(**resources: float) -> dict[str, Any]:
        options = {"nthreads": 1, "host": "127.0.0.1", "dashboard_address": "127.0.0.1:0"}
        return {"cls": Nanny, "options": {**options, "resources": resources}}

    spec = SpecCluster(
        scheduler={"cls": Scheduler, "options": NO_DASHBOARD},
        workers={"cpu": worker(), "gpu": worker(GPU=1)},
    )
    with spec:
        yield spec


@pytest.fixture
def worker_pids(cluster: Any) -> dict[str, int]:
    """The pid of each worker process, by address: looked up per test, since a test that
    kills a worker gets it replaced by its nanny, under a new pid."""
    from distributed import Client

    with Client(cluster.scheduler_address, set_as_default=False) as client:
        client.wait_for_workers(2, timeout=60)
        pids: dict[str, int] = client.run(os.getpid)
        resources = {a: w["resources"] for a, w in client.scheduler_info()["workers"].items()}
    return {
        ("gpu" if resources[address] else "cpu") + f"@{address}": pid
        for address, pid in pids.items()
    }


@pytest.fixture
def dask_settings(cluster: Any, tmp_path: Path) -> Callable[..., Settings]:
    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "state_dir": tmp_path / "state",
            "dags_folder": tmp_path / "dags",
            "slots": 8,
            "executor": "dask",
            "dask_address": cluster.scheduler_address,
            "api_port": 0,
        }
        return Settings(**{**values, **overrides})

    return make


async def _run(executor: DaskExecutor, dag: DagFile, task_id: str, *args: Any, **job: Any) -> Any:
    return await executor.execute(dag.job(task_id, *args, **job), dag.task(task_id))


async def test_a_fan_out_runs_in_the_worker_processes(
    dask_settings: Callable[..., Settings], tmp_path: Path, worker_pids: dict[str, int]
) -> None:
    dag = DagFile(tmp_path, TASKS)
    task = dag.task("where")
    outcomes: dict[int, TaskOutcome] = {}

    async def one(i: int, executor: DaskExecutor) -> None:
        job = dag.job("where", i, log_path=str(tmp_path / "logs" / f"{i}.log"))
        outcomes[i] = await executor.execute(job, task)

    async with DaskExecutor.open(dask_settings(), state_identity=str(tmp_path)) as executor:
        with anyio.fail_after(60):
            async with anyio.create_task_group() as group:
                for i in range(100):
                    group.start_soon(one, i, executor)
    assert {o.status for o in outcomes.values()} == {Outcome.SUCCESS}
    pids = {json.loads(o.result_json or "")["worker_pid"] for o in outcomes.values()}
    assert pids <= set(worker_pids.values()) and os.getpid() not in pids
    assert len(pids) == 2  # both workers took some
    # Only the task's output: no "waiting for Dask" line for a connection made meanwhile.
    assert (tmp_path / "logs" / "42.log").read_text() == "hello from 42\n"


async def test_a_result_that_is_not_json_fails_the_try(
    dask_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    dag = DagFile(tmp_path, TASKS)
    async with DaskExecutor.open(dask_settings(), state_identity=str(tmp_path)) as executor:
        with anyio.fail_after(30):
            outcome = await _run(executor, dag, "unstorable")
    assert outcome.status is Outcome.FAILED
    assert "not JSON-serialisable" in (outcome.error or "")
    assert "not JSON-serialisable" in dag.log("unstorable")


async def test_gpu_tasks_run_only_on_the_gpu_worker_one_at_a_time(
    dask_settings: Callable[..., Settings], tmp_path: Path, worker_pids: dict[str, int]
) -> None:
    dag = DagFile(tmp_path, TASKS.replace("@task\ndef gpu", '@task(resources={"GPU": 1})\ndef gpu'))
    task = dag.task("gpu")
    assert task.options.resources == {"GPU": 1.0}
    results: list[dict[str, float]] = []

    async def one(i: int, executor: DaskExecutor) -> None:
        job = dag.job("gpu", i, log_path=str(tmp_path / "logs" / f"{i}.log"))
        outcome = await executor.execute(job, task)
        results.append(json.loads(outcome.result_json or ""))

    async with DaskExecutor.open(dask_settings(), state_identity=str(tmp_path)) as executor:
        with anyio.fail_after(60):
            async with anyio.create_task_group() as group:
                for i in range(4):
                    group.start_soon(one, i, executor)
    gpu_pid = next(pid for name, pid in worker_pids.items() if name.startswith("gpu"))
    assert {r["worker_pid"] for r in results} == {gpu_pid}
    spans = sorted((r["start"], r["end"]) for r in results)
    assert all(end <= next_start for (_, end), (next_start, _) in itertools.pairwise(spans))


async def test_a_resource_no_worker_has_waits_with_a_reason(
    dask_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    dag = DagFile(
        tmp_path, TASKS.replace("@task\ndef where", '@task(resources={"TPU": 2})\ndef where')
    )
    async with DaskExecutor.open(dask_settings(), state_identity=str(tmp_path)) as executor:
        with anyio.fail_after(30):
            async with anyio.create_task_group() as group:
                group.start_soon(_run, executor, dag, "where", 1)
                await _until(lambda: "no Dask worker offers TPU=2" in _text(dag.log_path("where")))
                group.cancel_scope.cancel()
    assert "workers offer: GPU=1" in dag.log("where")


def _text(path: Path) -> str:
    return path.read_text() if path.exists() else ""


async def _until(condition: Callable[[], bool]) -> None:
    """Return once `condition` holds; the caller's deadline bounds the wait.

    What it watches (a log written from Dask's events, the connection's status) has no
    notification of its own to wait on, so it is looked at every 20 ms.
    """
    while not condition():  # noqa: ASYNC110 - nothing to wait on: see above
        await anyio.sleep(0.02)


@pytest.mark.parametrize("how", ["cancel", "timeout"])
async def test_cancel_and_timeout_kill_the_task_on_its_worker(
    how: str, dask_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    dag = DagFile(tmp_path, TASKS)
    fifo = open_fifo(tmp_path / "pid")
    timeout = 2.0 if how == "timeout" else None
    outcome: TaskOutcome | None = None
    async with DaskExecutor.open(dask_settings(), state_identity=str(tmp_path)) as executor:
        with anyio.fail_after(30):
            async with anyio.create_task_group() as group:

                async def run() -> None:
                    nonlocal outcome
                    outcome = await _run(
                        executor, dag, "hang", str(tmp_path / "pid"), timeout=timeout
                    )

                group.start_soon(run)
                pid = int(await read_fifo_line(fifo))
                pidfd = os.pidfd_open(pid)
                await _until(lambda: "started" in dag.log("hang"))  # shipped while it runs
                if how == "cancel":
                    group.cancel_scope.cancel()
                await wait_until_exited(pidfd)
                os.close(pidfd)
    if how == "timeout":
        assert outcome is not None and outcome.error == "timed out after 2 s"
        assert "timed out after 2 s" in dag.log("hang")


async def test_an_unreachable_scheduler_leaves_tasks_waiting_with_a_reason(
    dask_settings: Callable[..., Settings], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dask_connection, "CONNECT_TIMEOUT", 0.3)
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    dag = DagFile(tmp_path, TASKS)
    settings = dask_settings(dask_address=f"tcp://127.0.0.1:{port}")
    async with DaskExecutor.open(settings, state_identity=str(tmp_path)) as executor:
        with anyio.fail_after(20):
            async with anyio.create_task_group() as group:
                group.start_soon(_run, executor, dag, "where", 1)
                await _until(lambda: "cannot reach the Dask scheduler" in executor.status)
                await _until(lambda: "waiting for Dask" in _text(dag.log_path("where")))
                group.cancel_scope.cancel()
    assert f"127.0.0.1:{port}" in executor.status and "next attempt in" in executor.status


async def test_a_worker_on_other_versions_fails_the_try_naming_both(
    dask_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    dag = DagFile(tmp_path, TASKS)
    async with DaskExecutor.open(dask_settings(), state_identity=str(tmp_path)) as executor:
        executor._versions = {"python": "3.9.0", "orchestrator": "0.0.1"}
        with anyio.fail_after(30):
            outcome = await _run(executor, dag, "where", 1)
    assert outcome.status is Outcome.FAILED
    assert "the daemon runs Python 3.9.0 with orchestrator 0.0.1" in (outcome.error or "")
    assert "the Dask worker runs Python 3." in (outcome.error or "")


KILLED_MID_TASK = """
import os, threading
from pathlib import Path
from orchestrator import DAG, task

MARKER = Path({marker!r})

@task(retries=1, retry_delay=0)
def long():
    print("started", flush=True)
    if not MARKER.exists():
        MARKER.write_text("first")
        with open({fifo!r}, "w") as pipe:
            pipe.write(f"{{os.getppid()}}\\n")
        threading.Event().wait()
    return "done"

with DAG("killed"):
    long()
"""


async def test_a_worker_killed_mid_task_costs_one_try_then_the_retry_succeeds(
    dask_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    dags = tmp_path / "dags"
    dags.mkdir()
    fifo_path = tmp_path / "pid"
    source = KILLED_MID_TASK.format(marker=str(tmp_path / "marker"), fifo=str(fifo_path))
    (dags / "killed.py").write_text(textwrap.dedent(source))
    fifo = open_fifo(fifo_path)
    settings = dask_settings(dags_folder=dags)
    async with Engine.open(settings, dagbag=load_dag_bag(dags)) as engine:
        with anyio.fail_after(60):
            run_id = await engine.trigger("killed")
            worker_pid = int(await read_fifo_line(fifo))
            logs = settings.logs_dir / "killed"
            await _until(lambda: "started" in "".join(map(_text, logs.glob("*/long.try-1.log"))))
            os.kill(worker_pid, signal.SIGKILL)  # the Dask worker process, mid-task
            record = await engine.wait(run_id)
        tries = await engine.store.list_tries(record.run_id, "long")
        (instance,) = await engine.store.list_task_instances(record.run_id)
    assert record.state is RunState.SUCCESS and instance.state is TaskState.SUCCESS
    assert [t.state for t in tries] == [TaskState.UP_FOR_RETRY, TaskState.SUCCESS]
    assert "lost: the Dask worker or scheduler went away" in (tries[0].error or "")
    assert "started" in Path(tries[0].log_path).read_text()  # shipped live, before the kill
    assert "started" in Path(tries[1].log_path).read_text()


async def test_a_new_daemon_stops_the_tries_an_earlier_one_left_on_the_workers(
    dask_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    """The reconcile: a daemon that restarts runs its interrupted tries again, so the copies
    still running on the workers are stopped first, on connecting, before anything is sent."""
    dag = DagFile(tmp_path, TASKS)
    fifo = open_fifo(tmp_path / "pid")
    async with DaskExecutor.open(dask_settings(), state_identity=str(tmp_path)) as earlier:
        with anyio.fail_after(30):
            async with anyio.create_task_group() as group:
                group.start_soon(_run, earlier, dag, "hang", str(tmp_path / "pid"))
                pidfd = os.pidfd_open(int(await read_fifo_line(fifo)))
                async with DaskExecutor.open(dask_settings(), state_identity=str(tmp_path)) as new:
                    await new.connection.wait_connected()
                    await wait_until_exited(pidfd)
                os.close(pidfd)
                group.cancel_scope.cancel()


async def test_the_gpu_example_scores_on_the_gpu_worker(
    dask_settings: Callable[..., Settings], tmp_path: Path, worker_pids: dict[str, int]
) -> None:
    dags = tmp_path / "dags"
    dags.mkdir()
    example = Path(__file__).resolve().parents[2] / "examples" / "gpu_inference.py"
    (dags / example.name).write_text(example.read_text())
    async with Engine.open(dask_settings(dags_folder=dags), dagbag=load_dag_bag(dags)) as engine:
        with anyio.fail_after(60):
            record = await engine.wait(await engine.trigger("gpu_inference"))
        results = await engine.store.get_results(record.run_id)
    assert record.state is RunState.SUCCESS
    gpu_pid = next(pid for name, pid in worker_pids.items() if name.startswith("gpu"))
    assert json.loads(results[("score", -1)])["worker_pid"] == gpu_pid
    assert json.loads(results[("report", -1)]) == 4
