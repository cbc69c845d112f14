"""Scheduling overhead per no-op task of one `.expand()`, at 10,000 and 100,000 elements.

    .venv/bin/python bench/expand_scale.py [--repeat 3] [--large-repeat 1]

Prints ms per task, as the median of `--repeat` runs at 10,000 elements and of `--large-repeat`
runs at 100,000 (a few minutes each). The two figures should be about the same: the cost of an
element must not grow with the number of its siblings. In-process tasks, slots=2, a fresh state
directory with the default `synchronous=FULL`, as in `scheduling_overhead.py`. Nothing here
asserts: the figures are for the closing note and for spotting regressions by eye.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import textwrap
from pathlib import Path

from machine import machine  # bench/ is on the path when a script runs
from scheduling_overhead import median_of, one_run

DAGS = textwrap.dedent(
    """
    from orchestrator import DAG, task

    @task
    def square(x: int) -> int:
        return x * x

    for elements in (10_000, 100_000):
        with DAG(f"expand_{elements}"):
            square.expand(x=list(range(elements)))
    """
)


def per_task_ms(folder: Path, elements: int, repeat: int) -> str:
    def measure() -> float:
        elapsed, _ = asyncio.run(one_run(folder, f"expand_{elements}", in_process=True))
        return elapsed / elements * 1000

    median, samples = median_of(repeat, measure)
    spread = ", ".join(f"{s:.3f}" for s in samples)
    return f"{median:.3f} ms/task  (runs: {spread})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs at 10,000 (median)")
    parser.add_argument("--large-repeat", type=int, default=1, help="runs at 100,000 (median)")
    arguments = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        dags = Path(folder) / "dags"
        dags.mkdir()
        (dags / "expand_dags.py").write_text(DAGS)
        print(f"machine: {machine()}")
        print(f"command: {' '.join([Path(sys.executable).name, *sys.argv])}")
        print("in-process no-op tasks, state in a temp dir, synchronous=FULL, slots=2")
        print(f"expand over  10,000: {per_task_ms(dags, 10_000, arguments.repeat)}", flush=True)
        print(f"expand over 100,000: {per_task_ms(dags, 100_000, arguments.large_repeat)}")


if __name__ == "__main__":
    main()
