"""The floor under a chain's per-task figure: what one step costs with no engine at all.

    .venv/bin/python bench/chain_floor.py [--steps 500]

A chain's task N+1 may start only once the commit that records its start is durable, so each
step pays, one after the other: one commit (its statements and, with `synchronous=FULL`, an
fsync) in a database thread, then one try in a task thread that creates its log file. This
bench does exactly that with plain sqlite3 and `anyio.to_thread`, and no scheduling, so the
engine's per-task figure minus this one is what the engine's own Python costs:

- a commit alone, in the calling thread (FULL and NORMAL): the fsync's share;
- the same commit in a database thread: one thread round trip more;
- then a try in a task thread (a second round trip); then one that marks its start as the
  engine's tries do now (a line appended to `begun-tries`: a quiet try makes no log); then
  one that creates its log (`logs/DAG/RUN/TASK.try-N.log`), as every try did before, and
  the same with a folder per task (`logs/DAG/RUN/TASK/try-N.log`), as before that.

On ext4 without a journal (this project's VMs), making a file walks past every inode freed
in the last minute, so the two rows that create files grow with what the machine deleted
just before (a test suite, another bench): 0.03 to 0.6 ms a file on the same disk.

Each figure is the median of `--repeat` runs of `--steps` steps; nothing here asserts.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable

import anyio
import anyio.to_thread
from machine import load_average, machine  # bench/ is on the path when run

# The statements of one chain step: task N ends (try, result, state), task N+1 starts.
STEP = (
    "UPDATE tries SET state = 'success', ended_at = 1 WHERE task = ? AND n = 1",
    "INSERT INTO results (task, value) VALUES (?, 'null')",
    "UPDATE tis SET state = 'success', ended_at = 1 WHERE task = ? AND state = 'running'",
    "UPDATE tis SET state = 'running', started_at = 1 WHERE task = ? AND state = 'none'",
    "INSERT INTO tries (task, n, state, log_path) VALUES (?, 1, 'running', 'x')",
)
SCHEMA = """
    CREATE TABLE tis (task TEXT PRIMARY KEY, state TEXT, started_at REAL, ended_at REAL);
    CREATE TABLE tries (task TEXT, n INTEGER, state TEXT, ended_at REAL, log_path TEXT,
                        PRIMARY KEY (task, n));
    CREATE TABLE results (task TEXT PRIMARY KEY, value TEXT);
"""


class Chain:
    """A fresh database and log folder; `commit(n)` and `run_try(n)` are step n's two parts."""

    def __init__(self, folder: str, synchronous: str, steps: int) -> None:
        self.folder = folder
        path = os.path.join(folder, "chain.db")
        self.connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.connection.execute("PRAGMA journal_mode = WAL")
        self.connection.execute(f"PRAGMA synchronous = {synchronous}")
        self.connection.executescript(SCHEMA)
        rows = [(f"t{n}", "none") for n in range(steps + 2)]
        self.connection.executemany("INSERT INTO tis (task, state) VALUES (?, ?)", rows)

    def commit(self, n: int) -> None:
        ended, started = f"t{n - 1}", f"t{n}"
        execute = self.connection.execute
        execute("BEGIN IMMEDIATE")
        for sql, task in zip(STEP, (ended, ended, ended, started, started), strict=True):
            execute(sql, (task,))
        execute("COMMIT")

    def mark_begun(self, n: int) -> None:
        fd = os.open(
            os.path.join(self.folder, "begun-tries"), os.O_WRONLY | os.O_APPEND | os.O_CREAT
        )
        try:
            os.write(fd, f"{json.dumps(f'logs/chain/run/t{n}.try-1.log')}\n".encode())
        finally:
            os.close(fd)

    def run_try(self, n: int) -> None:
        folder = os.path.join(self.folder, "logs", "chain", "run")
        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, f"t{n}.try-1.log"), "a"):
            pass

    def run_try_in_task_folder(self, n: int) -> None:
        folder = os.path.join(self.folder, "logs", "chain", "run", f"t{n}")
        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, "try-1.log"), "a"):
            pass


def median_ms(repeat: int, steps: int, measure: Callable[[int], float]) -> str:
    samples = [measure(steps) / steps * 1000 for _ in range(repeat)]
    runs = ", ".join(f"{sample:.3f}" for sample in samples)
    return f"{statistics.median(samples):.3f} ms/step  (runs: {runs})"


def in_caller(synchronous: str) -> Callable[[int], float]:
    def measure(steps: int) -> float:
        with tempfile.TemporaryDirectory() as folder:
            chain = Chain(folder, synchronous, steps)
            started = time.perf_counter()
            for n in range(1, steps + 1):
                chain.commit(n)
            return time.perf_counter() - started

    return measure


def in_threads(synchronous: str, *, try_log: str | None) -> Callable[[int], float]:
    """Steps in threads; `try_log`: no try (None), or its log "none", "mark", "file", "folder"."""

    async def steps_in_threads(chain: Chain, steps: int) -> float:
        database = anyio.CapacityLimiter(1)
        run_try = {"none": _nothing, "mark": chain.mark_begun, "file": chain.run_try}.get(
            try_log or "none", chain.run_try_in_task_folder
        )
        started = time.perf_counter()
        for n in range(1, steps + 1):
            await anyio.to_thread.run_sync(chain.commit, n, limiter=database)
            if try_log is not None:
                await anyio.to_thread.run_sync(run_try, n)
        return time.perf_counter() - started

    def measure(steps: int) -> float:
        with tempfile.TemporaryDirectory() as folder:
            return anyio.run(steps_in_threads, Chain(folder, synchronous, steps), steps)

    return measure


def _nothing(_: int) -> None:
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=500, help="chain steps per run")
    parser.add_argument("--repeat", type=int, default=5, help="runs per figure (median)")
    options = parser.parse_args()
    print(f"machine: {machine()}")
    cases = (
        ("commit, FULL, in the caller", in_caller("FULL")),
        ("commit, NORMAL, in the caller", in_caller("NORMAL")),
        ("commit, FULL, in a db thread", in_threads("FULL", try_log=None)),
        ("  + an empty try in a thread", in_threads("FULL", try_log="none")),
        ("  + the try marks its start", in_threads("FULL", try_log="mark")),
        ("  + the try creates its log", in_threads("FULL", try_log="file")),
        ("  + ... in a folder per task", in_threads("FULL", try_log="folder")),
    )
    for label, measure in cases:
        print(f"{label:<32}: {median_ms(options.repeat, options.steps, measure)}")
    print(f"load average at end: {load_average()}")


if __name__ == "__main__":
    main()
