"""Where a no-op task's time goes: the engine loop's idle share, CPU per task, commits per task.

    .venv/bin/python bench/overhead_profile.py chain_1000 [--workers] [--cprofile out.prof]

Runs one DAG of `scheduling_overhead.py` once (in-process unless `--workers`) and prints, per
task: wall time; how much of it the event loop spent idle in `select` (waiting on the database
thread's commit, a task thread or a worker) and how many loop iterations it took; the CPU of
the loop's thread and of the whole process (the rest is the database and task threads); and
the store's transactions and batches. Counts and CPU depend little on the machine's load, wall
time a lot: compare before and after by those. `--cprofile` writes a profile of the loop's
thread (`python -m pstats out.prof`), taken over the measured run only.

`--logs` is an experiment, not a setting: `folder` puts each try's log in a folder of its task
(`logs/DAG/RUN/TASK/try-N.log`, the layout before `flat`, which is the engine's own:
`logs/DAG/RUN/TASK.try-N.log`), and `none` gives tries no log file, so one can see what the
folder and the file of each in-process try cost on this disk.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import selectors
import tempfile
import time
from pathlib import Path
from typing import Any

from machine import load_average, machine  # bench/ is on the path when run
from scheduling_overhead import DAGS

from orchestrator.config import Settings
from orchestrator.loading.dagbag import load_dag_bag
from orchestrator.scheduling.active_runs import TaskInstance
from orchestrator.scheduling.engine import Engine
from orchestrator.scheduling.scheduler import Scheduler


class IdleClock:
    """Wraps the loop's selector: time spent waiting in `select`, and how many times."""

    def __init__(self, selector: selectors.BaseSelector) -> None:
        self.seconds = 0.0
        self.selects = 0
        self._select = selector.select
        selector.select = self._timed  # type: ignore[method-assign]

    def _timed(self, timeout: float | None = None) -> Any:
        started = time.perf_counter()
        try:
            return self._select(timeout)
        finally:
            self.seconds += time.perf_counter() - started
            self.selects += 1


async def profile_run(
    folder: Path, dag_id: str, in_process: bool, profile: str | None, synchronous: str
) -> None:
    idle = IdleClock(asyncio.get_running_loop()._selector)  # type: ignore[attr-defined]
    with tempfile.TemporaryDirectory() as state:
        settings = Settings(
            state_dir=Path(state),
            dags_folder=folder,
            in_process=in_process,
            slots=2,
            synchronous=synchronous,
        )
        bag = load_dag_bag(folder)
        tasks = len(bag.dags[dag_id].tasks)
        async with Engine.open(settings, dagbag=bag) as engine:
            await engine.wait(await engine.trigger(dag_id))  # warm: workers up, DAG imported
            before = engine.store.statistics()
            idle.seconds, idle.selects = 0.0, 0
            profiler = cProfile.Profile() if profile else None
            times, thread_cpu, started = os.times(), time.thread_time(), time.perf_counter()
            if profiler:
                profiler.enable()
            await engine.wait(await engine.trigger(dag_id))
            if profiler:
                profiler.disable()
            wall = time.perf_counter() - started
            thread_cpu = time.thread_time() - thread_cpu
            user, system = os.times().user - times.user, os.times().system - times.system
            after = engine.store.statistics()
    if profiler and profile:
        profiler.dump_stats(profile)

    def per_task(value: float) -> str:
        return f"{value / tasks * 1000:.3f} ms"

    print(f"{dag_id}, {'in-process' if in_process else 'worker processes'}, per task:")
    share = f"{idle.seconds / wall:.0%}"
    print(f"  wall {per_task(wall)}; loop idle {per_task(idle.seconds)} ({share})")
    print(f"  loop iterations {idle.selects / tasks:.2f}")
    print(f"  CPU: loop thread {per_task(thread_cpu)}; process (all threads, not workers)")
    print(f"       user {per_task(user)}, system {per_task(system)} (fsync, files, wake-ups)")
    transactions = after.transactions - before.transactions
    batches = after.batches - before.batches
    seconds = after.transaction_seconds - before.transaction_seconds
    print(f"  store: {transactions / tasks:.2f} transactions, {batches / tasks:.2f} batches,")
    print(f"         {per_task(seconds)} from a group's start to its commit, as the loop saw it")


def change_log_layout(layout: str) -> None:
    """The `--logs` experiment: replace where tries log (the engine's own layout is `flat`)."""
    engines = Scheduler.log_path

    def folder(scheduler: Scheduler, ti: TaskInstance) -> str:
        flat = engines(scheduler, ti)
        stem, try_part = flat.removesuffix(".log").rsplit(".try-", 1)
        return f"{stem}/try-{try_part}.log"

    def none(scheduler: Scheduler, ti: TaskInstance) -> str:
        return ""

    if layout != "flat":
        Scheduler.log_path = folder if layout == "folder" else none  # type: ignore[method-assign]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("dag_id", choices=("fan_out_1000", "chain_1000", "workers_200"))
    parser.add_argument("--workers", action="store_true", help="run tasks on worker processes")
    parser.add_argument("--cprofile", metavar="FILE", help="write a profile of the loop thread")
    parser.add_argument(
        "--logs", choices=("flat", "folder", "none"), default="flat", help="an experiment"
    )
    parser.add_argument(
        "--synchronous", choices=("FULL", "NORMAL"), default="FULL", help="the store's setting"
    )
    options = parser.parse_args()
    change_log_layout(options.logs)
    print(f"machine: {machine()}")
    print(f"try logs: {options.logs} (the engine's own layout is `flat`)")
    print(f"synchronous={options.synchronous}")
    with tempfile.TemporaryDirectory() as folder:
        dags = Path(folder) / "dags"
        dags.mkdir()
        (dags / "bench_dags.py").write_text(DAGS)
        run = profile_run(
            dags, options.dag_id, not options.workers, options.cprofile, options.synchronous
        )
        asyncio.run(run)
    print(f"load average at end: {load_average()}")


if __name__ == "__main__":
    main()
