"""How large the store's write-ahead log grows under steady load, and what a commit costs then.

    .venv/bin/python bench/wal_growth.py [--seconds 15]

Runs the 1,000-task fan-out of `scheduling_overhead.py` back to back, in-process, for
`--seconds`, and prints the `-wal` file's size after each run and per-task wall time. SQLite
rewinds a WAL only when a write begins with every frame checkpointed; with background PASSIVE
checkpoints alone, steady commits never gave it that moment and the file grew by about
40 MB a second on this VM (590 MB in 19 s), every COMMIT's fsync also writing the file's new
size. The writer now runs a RESTART checkpoint after each background one (`store/
checkpoints.py`), so the size levels off. PASS: the last third of the runs did not grow it by
more than `--growth-limit` MB. Nothing else is asserted; the figures are for the note.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from machine import load_average, machine, verdict  # bench/ is on the path when run
from scheduling_overhead import DAGS

from orchestrator.config import Settings
from orchestrator.loading.dagbag import load_dag_bag
from orchestrator.scheduling.engine import Engine


async def steady_runs(seconds: float) -> list[tuple[float, float, int]]:
    """(seconds since start, ms per task, WAL bytes) after each run."""
    samples: list[tuple[float, float, int]] = []
    with tempfile.TemporaryDirectory() as folder:
        dags = Path(folder) / "dags"
        dags.mkdir()
        (dags / "bench_dags.py").write_text(DAGS)
        state = Path(folder) / "state"
        settings = Settings(state_dir=state, dags_folder=dags, in_process=True, slots=2)
        async with Engine.open(settings, dagbag=load_dag_bag(dags)) as engine:
            wal = state / "orchestrator.db-wal"
            started = time.perf_counter()
            while (now := time.perf_counter()) - started < seconds:
                await engine.wait(await engine.trigger("fan_out_1000"))
                took = time.perf_counter() - now
                samples.append((now - started + took, took, wal.stat().st_size))
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=15.0, help="how long to keep runs going")
    parser.add_argument("--growth-limit", type=float, default=16.0, help="MB, last third")
    options = parser.parse_args()
    print(f"machine: {machine()}")
    print(f"command: python bench/wal_growth.py --seconds {options.seconds:g}")
    samples = asyncio.run(steady_runs(options.seconds))
    for at, took, size in samples:  # a run is 1,000 tasks: its seconds are ms per task
        print(f"{at:6.1f} s  {took:.3f} ms per task  WAL {size / 1e6:7.1f} MB")
    last = samples[len(samples) * 2 // 3 :]
    growth = (last[-1][2] - last[0][2]) / 1e6
    per_task = statistics.median(took for _, took, _ in samples)
    print(f"runs: {len(samples)}; median {per_task:.3f} ms per task; largest WAL", end=" ")
    print(f"{max(size for *_, size in samples) / 1e6:.1f} MB; last third grew it {growth:.1f} MB")
    print(f"WAL levels off under steady load: {verdict(growth <= options.growth_limit)}")
    print(f"load average at end: {load_average()}")


if __name__ == "__main__":
    main()
