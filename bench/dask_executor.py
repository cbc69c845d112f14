"""The Dask executor's overhead: ours vs a plain `client.submit` vs the local worker pool.

    PYTHONPATH=. .venv/bin/python bench/dask_executor.py [--repeat 5] [--tasks 1000] [--chain 100]

On one 2-worker `LocalCluster` (processes, one thread each, loopback, no dashboard):

- **fan-out**: `--tasks` no-op tries at once, until all have finished;
- **chain**: `--chain` no-op tries one after another (each waits for the previous outcome):
  the round trip per task, where the per-task overhead shows.

Each through our `DaskExecutor` (job as JSON, DAG source shipped, our worker process on the
Dask worker, log FIFO, outcome checks), through plain `client.submit` of a no-op function
(Dask's own round trip), and through our local pool with 2 worker processes. Every figure
is the median of `--repeat` runs. Targets: our overhead per task within 2 ms of Dask's round
trip; a fan-out within 1.5x of plain Dask. Nothing here asserts.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from machine import machine
from taskjobs import DagFile

from orchestrator.config import Settings
from orchestrator.execution.dask_executor import DaskExecutor
from orchestrator.execution.executor import Executor

NOOP = """
@task
def noop(i):
    return i
"""


def noop(i: int) -> int:
    return i


async def _timed(run: Callable[[], Awaitable[None]]) -> float:
    start = time.perf_counter()
    await run()
    return time.perf_counter() - start


async def _fan_out(execute: Callable[[int], Awaitable[Any]], count: int) -> None:
    async with anyio.create_task_group() as group:
        for i in range(count):
            group.start_soon(execute, i)


async def _chain(execute: Callable[[int], Awaitable[Any]], count: int) -> None:
    for i in range(count):
        await execute(i)


async def measure(address: str, folder: Path, tasks: int, chain: int) -> dict[str, float]:
    from distributed import Client

    dag = DagFile(folder, NOOP)
    task = dag.task("noop")
    figures: dict[str, float] = {}

    def ours(executor: Any) -> Callable[[int], Awaitable[Any]]:
        async def execute(i: int) -> None:
            job = dag.job("noop", i, log_path=str(folder / "logs" / f"{i % 64}.log"))
            outcome = await executor.execute(job, task)
            assert outcome.result_json == str(i), outcome

        return execute

    async with Client(address, asynchronous=True, set_as_default=False) as client:

        async def plain(i: int) -> None:
            assert await client.submit(noop, i, pure=False) == i

        await _chain(plain, 10)  # warm up
        figures["dask fan-out"] = await _timed(lambda: _fan_out(plain, tasks))
        figures["dask chain"] = await _timed(lambda: _chain(plain, chain))

    settings = Settings(
        state_dir=folder / "state", executor="dask", dask_address=address, slots=tasks
    )
    async with DaskExecutor.open(settings, state_identity=str(folder)) as executor:
        await _chain(ours(executor), 10)
        figures["ours fan-out"] = await _timed(lambda: _fan_out(ours(executor), tasks))
        figures["ours chain"] = await _timed(lambda: _chain(ours(executor), chain))

    async with Executor.open(slots=2, prestart=2) as local:
        await _chain(ours(local), 10)
        figures["local fan-out"] = await _timed(lambda: _fan_out(ours(local), tasks))
        figures["local chain"] = await _timed(lambda: _chain(ours(local), chain))
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--chain", type=int, default=100)
    options = parser.parse_args()
    from distributed import LocalCluster

    print(machine())
    print("command:", " ".join([Path(sys.executable).name, *sys.argv]))
    runs: list[dict[str, float]] = []
    with LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        scheduler_kwargs={"dashboard": False},
        dashboard_address="127.0.0.1:0",
    ) as cluster:
        for _ in range(options.repeat):
            with tempfile.TemporaryDirectory() as folder:
                runs.append(
                    anyio.run(
                        measure,
                        cluster.scheduler_address,
                        Path(folder),
                        options.tasks,
                        options.chain,
                    )
                )
    median = {name: statistics.median(run[name] for run in runs) for name in runs[0]}
    for name, seconds in median.items():
        count = options.tasks if "fan-out" in name else options.chain
        print(f"{name:15} {seconds:8.3f} s   {seconds / count * 1000:7.2f} ms/task")
    overhead = (median["ours chain"] - median["dask chain"]) / options.chain * 1000
    ratio = median["ours fan-out"] / median["dask fan-out"]
    print(f"our overhead per task over Dask's round trip: {overhead:.2f} ms (target <= 2 ms)")
    print(f"fan-out, ours / plain Dask: {ratio:.2f}x (target <= 1.5x)")


if __name__ == "__main__":
    main()
