"""Scheduling overhead per no-op task, and start-up latency of the CLI.

    .venv/bin/python bench/scheduling_overhead.py [--repeat 5]

Prints, as the median of `--repeat` runs each, ms per task of each DAG warm (a second run in
the same engine: the per-task cost of a daemon that runs; the targets are for this one) and
cold (the engine's first run, with no per-task target):
- a 1,000-task fan-out and a 1,000-task chain on the in-process mode; a cold run also pays
  for a fresh store (its write-ahead log grows with each commit until the first checkpoint
  lets it start over, and such a commit's fsync writes the file's size too);
- 200 tasks on worker processes; a cold run also waits for the workers to start and to import
  the DAG file: printed with what that start cost once, in ms;
- seconds from starting `orchestrator run` until its first task starts;
- seconds for `orchestrator --help`.
Child processes (the CLI, worker processes) cache their bytecode, as an installed package's
does, in a temporary folder (`PYTHONPYCACHEPREFIX`), even where `PYTHONDONTWRITEBYTECODE` is
set (this project's VMs set it): otherwise each one compiles every module it imports, about
0.15 s of `orchestrator run`. The two CLI figures take one unmeasured run first, which fills
that cache.
Every run uses a fresh state directory with the default `synchronous=FULL`. Nothing here
asserts: each per-task figure is printed with its target and a verdict (never PASS above a
load average of 1.0: rerun on a quiet machine).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

from machine import load_average, machine, verdict  # bench/ is on the path when run

from orchestrator.config import Settings
from orchestrator.loading.dagbag import load_dag_bag
from orchestrator.scheduling.engine import Engine

IN_PROCESS_TARGET_MS = 0.5
WORKERS_TARGET_MS = 1.0  # a forked worker's round trip alone is about 0.23 ms

DAGS = textwrap.dedent(
    """
    from orchestrator import DAG, chain, task

    @task
    def noop() -> None:
        return None

    with DAG("fan_out_1000", max_active_tasks=10_000):
        root = noop.override(task_id="root")()
        root >> [noop.override(task_id=f"t{i}")() for i in range(1000)]

    with DAG("chain_1000"):
        chain(*[noop.override(task_id=f"t{i}")() for i in range(1000)])

    with DAG("workers_200", max_active_tasks=10_000):
        [noop.override(task_id=f"t{i}")() for i in range(200)]
    """
)

FIRST_TASK = textwrap.dedent(
    """
    import time
    from orchestrator import DAG, task

    @task
    def first(context) -> None:
        with open(context.conf["marker"], "w") as handle:
            handle.write(repr(time.time()))

    with DAG("first_task"):
        first()
    """
)


async def one_run(
    dags_folder: Path, dag_id: str, in_process: bool, warm: bool = False
) -> tuple[float, int]:
    """Seconds from trigger to finished run, and how many tasks it had.

    `warm` first runs the DAG once unmeasured, so the measured run finds the worker processes
    started and the DAG file imported in them.
    """
    with tempfile.TemporaryDirectory() as state:
        settings = Settings(
            state_dir=Path(state), dags_folder=dags_folder, in_process=in_process, slots=2
        )
        bag = load_dag_bag(dags_folder)
        async with Engine.open(settings, dagbag=bag) as engine:
            if warm:
                await engine.wait(await engine.trigger(dag_id))
            started = time.perf_counter()
            run_id = await engine.trigger(dag_id)
            record = await engine.wait(run_id)
            elapsed = time.perf_counter() - started
        if record.state != "success":
            raise SystemExit(f"{dag_id} ended {record.state}")
        return elapsed, len(bag.dags[dag_id].tasks)


# (label, DAG, in-process, warm, target ms per task): issue #17's targets for a no-op task.
# The targets are per task once the engine runs; a cold start's share (a fresh store; for
# workers, two Python processes starting and importing the DAG file, ~0.2 s once) has no
# per-task target: the cold figures are printed beside the warm ones.
CASES: tuple[tuple[str, str, bool, bool, float | None], ...] = (
    ("fan-out 1,000 tasks, in-process", "fan_out_1000", True, True, IN_PROCESS_TARGET_MS),
    ("  the same, a fresh engine's run", "fan_out_1000", True, False, None),
    ("chain   1,000 tasks, in-process", "chain_1000", True, True, IN_PROCESS_TARGET_MS),
    ("  the same, a fresh engine's run", "chain_1000", True, False, None),
    ("200 tasks on worker processes", "workers_200", False, True, WORKERS_TARGET_MS),
    ("  the same, workers starting", "workers_200", False, False, None),
)


def median_of(repeat: int, measure: Callable[[], float]) -> tuple[float, list[float]]:
    samples = [measure() for _ in range(repeat)]
    return statistics.median(samples), samples


def cache_bytecode_of_children(folder: Path) -> str:
    """Let child processes keep their compiled modules (in `folder`), as an install does."""
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    os.environ["PYTHONPYCACHEPREFIX"] = str(folder)
    return f"child processes cache bytecode in {folder} (PYTHONPYCACHEPREFIX)"


def per_task_ms(
    folder: Path, dag_id: str, in_process: bool, warm: bool, repeat: int, target: float | None
) -> tuple[float, str]:
    """The median ms per task, and a line with the runs and the verdict against `target`."""
    tasks = 1

    def measure() -> float:
        nonlocal tasks
        elapsed, tasks = asyncio.run(one_run(folder, dag_id, in_process, warm))
        return elapsed / tasks * 1000

    median, samples = median_of(repeat, measure)
    spread = ", ".join(f"{s:.3f}" for s in samples)
    line = f"{median:.3f} ms/task  (runs: {spread})"
    if target is not None:
        line += f"   <= {target:g}: {verdict(median <= target)}"
    return median * tasks, line


def first_task_seconds(folder: Path, repeat: int) -> str:
    cli = [sys.executable, "-m", "orchestrator.cli"]

    def measure() -> float:
        with tempfile.TemporaryDirectory() as state:
            marker = Path(state) / "marker"
            conf = json.dumps({"marker": str(marker)})
            started = time.time()
            subprocess.run(
                [
                    *cli,
                    "--state-dir",
                    state,
                    "--dags-folder",
                    str(folder),
                    "run",
                    "first_task",
                    "--conf",
                    conf,
                ],
                check=True,
                stdout=subprocess.DEVNULL,
            )
            return float(marker.read_text()) - started

    measure()  # fills the bytecode cache
    median, samples = median_of(repeat, measure)
    return f"{median:.3f} s  (runs: {', '.join(f'{s:.3f}' for s in samples)})"


def help_seconds(repeat: int) -> str:
    command = [str(Path(sys.executable).with_name("orchestrator")), "--help"]

    def measure() -> float:
        started = time.perf_counter()
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
        return time.perf_counter() - started

    measure()  # fills the bytecode cache
    median, samples = median_of(repeat, measure)
    return f"{median:.3f} s  (runs: {', '.join(f'{s:.3f}' for s in samples)})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=5, help="runs per figure (median)")
    repeat = parser.parse_args().repeat
    with tempfile.TemporaryDirectory() as folder:
        dags = Path(folder) / "dags"
        dags.mkdir()
        (dags / "bench_dags.py").write_text(DAGS)
        first = Path(folder) / "first"
        first.mkdir()
        (first / "first_task.py").write_text(FIRST_TASK)
        print(f"machine: {machine()}")
        print(f"command: {' '.join([Path(sys.executable).name, *sys.argv])}")
        print(f"median of {repeat} runs, state in a temp dir, synchronous=FULL, slots=2")
        print(cache_bytecode_of_children(Path(folder) / "pycache"))
        warm_ms = 0.0
        for label, dag_id, in_process, warm, target in CASES:
            total_ms, figure = per_task_ms(dags, dag_id, in_process, warm, repeat, target)
            if dag_id == "workers_200" and warm:
                warm_ms = total_ms
            elif dag_id == "workers_200":
                figure += f"; the workers' start: {total_ms - warm_ms:.0f} ms once"
            print(f"{label:<32}: {figure}")
        print(f"first task after `orchestrator run`: {first_task_seconds(first, repeat)}")
        print(f"`orchestrator --help`            : {help_seconds(repeat)}")
        print(f"load average at end: {load_average()}")


if __name__ == "__main__":
    main()
