"""What loading a DAGs folder costs the command line: `orchestrator dags list`, end to end.

    .venv/bin/python bench/dag_loading.py [--runs N]

Each DAG file is import-checked under limits before the CLI imports it
(`orchestrator/loading/importcheck.py`). Three folders: `examples/` (4 files) and generated
folders of 20 and 100 small DAG files. For each, the median wall time of N runs (5) of

    python -m orchestrator dags list --dags-folder F --state-dir S

cold (a new state directory each run: every file is checked) and warm (the same state
directory, after one run: the verdicts persisted there are reused). Nothing asserts.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from machine import machine  # bench/ is on the path when a script runs

ROOT = Path(__file__).resolve().parents[1]

DAG_FILE = """\
from orchestrator import DAG, task


@task
def extract() -> list[int]:
    return list(range({n}))


@task
def total(values: list[int]) -> int:
    return sum(values)


with DAG("generated_{n}"):
    total(extract())
"""


def generate(folder: Path, count: int) -> Path:
    folder.mkdir()
    for n in range(count):
        (folder / f"dag_{n:03d}.py").write_text(DAG_FILE.format(n=n))
    return folder


def list_dags(folder: Path, state: Path) -> float:
    state.mkdir(exist_ok=True)  # as a run or the daemon leaves it: verdicts are kept there
    argv = [sys.executable, "-m", "orchestrator", "dags", "list"]
    argv += ["--dags-folder", str(folder), "--state-dir", str(state)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    started = time.perf_counter()
    subprocess.run(argv, env=env, cwd=ROOT, check=True, capture_output=True)
    return time.perf_counter() - started


def median_seconds(folder: Path, scratch: Path, runs: int, *, warm: bool) -> float:
    state = scratch / f"state-{folder.name}-warm"
    if warm:
        list_dags(folder, state)  # fills the verdict cache
    times = []
    for run in range(runs):
        if not warm:
            state = scratch / f"state-{folder.name}-cold-{run}"
        times.append(list_dags(folder, state))
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    runs = parser.parse_args().runs
    print(machine())
    with tempfile.TemporaryDirectory(prefix="bench-loading-") as scratch_name:
        scratch = Path(scratch_name)
        folders = {
            "examples/ (4 files)": ROOT / "examples",
            "20 files": generate(scratch / "twenty", 20),
            "100 files": generate(scratch / "hundred", 100),
        }
        print(f"`dags list`, median of {runs} runs:")
        for label, folder in folders.items():
            cold = median_seconds(folder, scratch, runs, warm=False)
            warm = median_seconds(folder, scratch, runs, warm=True)
            print(f"  {label:<20} cold {cold:.2f} s   warm {warm:.2f} s")


if __name__ == "__main__":
    main()
