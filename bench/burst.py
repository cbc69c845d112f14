"""A burst of files on a running daemon: how fast every event becomes a run, and finishes.

    .venv/bin/python bench/burst.py [--quick] [--repeat 3] [--files 1000] [--spread 1.0]
                                    [--verbose]

`orchestrator daemon` runs as a real child process on a fresh state directory, with one DAG
started by `run_on=FileTrigger(directory=incoming, pattern="*.csv")`, `max_active_runs=4` and
one small in-process task (the size of the file in `conf["path"]`). Once the daemon answers
and hosts the run trigger, `--files` files land in the folder over about `--spread` seconds:
each is written under a temporary name outside the folder, then renamed into it, so the
trigger never sees a partial file. Measured from the first file landed:

- until the first run is committed, and until all of them are (`SELECT count(*) FROM runs`);
- until every run has finished (state success or failed), and the end-to-end throughput;
- failed runs (target 0), and exactly once: as many events and runs as files, every file in
  exactly one run;
- the daemon's store transactions and batches, its peak RSS (VmHWM), and how long SIGTERM
  takes to stop it.

The database is read by this process, read-only, every 10 ms: the observer, not the system
under test. Each figure is the median of `--repeat` bursts, each on a fresh daemon and state
directory. Nothing here asserts; the figures are for the closing note and for regressions.

`Daemon` (the child process, its control socket, its /proc figures) is shared with
`bench/idle_daemon.py`.
"""

from __future__ import annotations

import argparse
import os
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from contextlib import closing
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar
from urllib.parse import quote

from machine import load_average, machine, verdict  # bench/ is on the path when run

from orchestrator.daemon.control import control_path, request_sync
from orchestrator.errors import OrchestratorError

T = TypeVar("T")

POLL_SECONDS = 0.010  # how often the observer reads the database
SETTLE_SECONDS = 1.0  # after start-up, before the burst: DAG load and first listing are done
GIVE_UP_SECONDS = 600.0
FINISHED = ("success", "failed")

DAG_FILE = """\
import os

from orchestrator import DAG, task
from triggers import FileTrigger


@task(in_process=True)
def measure(context) -> int:
    return os.path.getsize(context.conf["path"])


with DAG(
    "burst",
    run_on=FileTrigger(directory={incoming!r}, pattern="*.csv"),
    max_active_runs=4,
):
    measure()
"""

# -- the daemon as a child process ------------------------------------------------------------


class Daemon:
    """`orchestrator daemon` as a child process: started, asked, stopped, never left behind.

    Leaving the `with` block sends SIGTERM and waits; a daemon that does not stop within
    `stop_timeout` is killed with SIGKILL. Its output goes to `root/daemon.log`.
    """

    def __init__(self, root: Path, *, stop_timeout: float = 60.0) -> None:
        self.state_dir = root / "state"
        self.dags_folder = root / "dags"
        self.log_path = root / "daemon.log"
        self.stop_timeout = stop_timeout
        self.stop_seconds = float("nan")
        argv = [sys.executable, "-m", "orchestrator.cli", "daemon"]
        argv += ["--state-dir", str(self.state_dir), "--dags-folder", str(self.dags_folder)]
        argv += ["--shutdown-grace", "5"]
        with open(self.log_path, "ab") as log:
            # cwd=root: no orchestrator.toml of the caller's folder changes the settings.
            self.process = subprocess.Popen(
                argv, cwd=root, env=_clean_environment(), stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT,
            )  # fmt: skip

    def __enter__(self) -> Daemon:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def db_path(self) -> Path:
        return self.state_dir / "orchestrator.db"

    def ask(self, op: str, **fields: Any) -> dict[str, Any]:
        """One request on the control socket, e.g. `ask("status")`."""
        return request_sync(control_path(self.state_dir), {"op": op, **fields})

    def wait_ready(self, timeout: float = 60.0) -> dict[str, Any]:
        """The daemon's first status reply; fails if it exits or stays silent."""

        def answered() -> dict[str, Any] | None:
            if self.process.poll() is not None:
                raise SystemExit(f"the daemon exited ({self.process.returncode}):\n{self.log()}")
            try:
                return self.ask("status")
            except OrchestratorError:
                return None  # not listening yet

        return poll_until(answered, timeout, "the daemon to answer", every=0.05)

    def wait_status(self, check: Callable[[dict[str, Any]], bool], what: str) -> dict[str, Any]:
        """Ask for the status until `check` holds; that status."""

        def status() -> dict[str, Any] | None:
            reply = self.ask("status")
            return reply if check(reply) else None

        return poll_until(status, GIVE_UP_SECONDS, what, every=0.05)

    def peak_rss_mib(self) -> float:
        return proc_status_kib(self.pid, "VmHWM") / 1024

    def stop(self) -> None:
        """SIGTERM, then wait; SIGKILL if it hangs. Records how long the stop took."""
        if self.process.poll() is not None:
            return
        started = time.perf_counter()
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(self.stop_timeout)
        except subprocess.TimeoutExpired:
            print(f"  the daemon ignored SIGTERM for {self.stop_timeout:g} s: SIGKILL", flush=True)
            self.process.kill()
            self.process.wait()
        self.stop_seconds = time.perf_counter() - started

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def stop_on_signals() -> None:
    """Ctrl-C or SIGTERM raise here, wherever the bench is, so the daemon is stopped on the way out.

    Not Python's own SIGINT handler: `anyio.run` then replaces it with one that cancels its
    task, and a cancelled control request can swallow the interrupt.
    """

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(signal.Signals(signum).name)

    signal.signal(signal.SIGINT, interrupt)
    signal.signal(signal.SIGTERM, interrupt)


def _clean_environment() -> dict[str, str]:
    """This environment without ORCHESTRATOR_* settings (or a crash point) of the caller's."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("ORCHESTRATOR_")}
    return environment | {"PYTHONUNBUFFERED": "1"}


def proc_status_kib(pid: int, field: str) -> int:
    """A `kB` line of /proc/<pid>/status, such as VmHWM (peak RSS) or VmRSS."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise SystemExit(f"/proc/{pid}/status has no {field}")


def poll_until(predicate: Callable[[], T | None], timeout: float, what: str, every: float) -> T:
    """Poll a condition in another process (there is nothing to wait on); its first value."""
    deadline = time.monotonic() + timeout
    while (value := predicate()) is None:
        if time.monotonic() >= deadline:
            raise SystemExit(f"gave up after {timeout:g} s waiting for {what}")
        time.sleep(every)
    return value


def connect_readonly(db_path: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{quote(str(db_path.resolve()))}?mode=ro", uri=True)


# -- the observer -------------------------------------------------------------------------------


class Observer(threading.Thread):
    """Reads the run counts every 10 ms, in a thread, while the files land.

    It notes (as `time.perf_counter()` values) when the first run was committed, when all
    were, and when all had finished.
    """

    def __init__(self, db_path: Path, expected: int) -> None:
        super().__init__(name="observer", daemon=True)
        self.db_path = db_path
        self.expected = expected
        self.first_committed: float | None = None
        self.all_committed: float | None = None
        self.all_finished: float | None = None
        self.polls = 0
        self._halt = threading.Event()

    def run(self) -> None:
        sql = f"SELECT count(*), coalesce(sum(state IN {FINISHED}), 0) FROM runs"
        with closing(connect_readonly(self.db_path)) as connection:
            while self.all_finished is None and not self._halt.wait(POLL_SECONDS):
                committed, finished = connection.execute(sql).fetchone()
                self._note(committed, finished, time.perf_counter())

    def _note(self, committed: int, finished: int, now: float) -> None:
        self.polls += 1
        if committed and self.first_committed is None:
            self.first_committed = now
        if committed >= self.expected and self.all_committed is None:
            self.all_committed = now
        if finished >= self.expected:
            self.all_finished = now

    def finish(self, timeout: float) -> None:
        self.join(timeout)
        self._halt.set()
        self.join()
        if self.all_finished is None:
            raise SystemExit(f"the runs did not all finish within {timeout:g} s")


# -- one burst ----------------------------------------------------------------------------------


def one_burst(files: int, spread: float, verbose: bool) -> dict[str, Any]:
    """A fresh daemon and state directory, `files` files landed, and the figures."""
    with tempfile.TemporaryDirectory(prefix="burst-") as folder:
        root = Path(folder)
        incoming, staging = prepare(root)
        daemon = Daemon(root)
        try:
            with daemon:
                figures = burst_on(daemon, incoming, staging, files, spread)
        finally:
            if verbose:
                sys.stderr.write(daemon.log())
        figures["stop_s"] = daemon.stop_seconds
        return figures


def prepare(root: Path) -> tuple[Path, Path]:
    """The DAG file, the watched folder and the staging folder (same file system)."""
    incoming, staging, dags = root / "incoming", root / "staging", root / "dags"
    for folder in (incoming, staging, dags):
        folder.mkdir()
    (dags / "burst.py").write_text(DAG_FILE.format(incoming=str(incoming)))
    return incoming, staging


def burst_on(
    daemon: Daemon, incoming: Path, staging: Path, files: int, spread: float
) -> dict[str, Any]:
    daemon.wait_ready()
    daemon.wait_status(lambda s: s["run_triggers"] == 1, "the run trigger to be hosted")
    time.sleep(SETTLE_SECONDS)  # the trigger's watch and first listing are in place by now
    observer = Observer(daemon.db_path, files)
    observer.start()
    first, last = land(incoming, staging, files, spread)
    observer.finish(GIVE_UP_SECONDS)
    status = daemon.ask("status")
    return {
        "landing_s": last - first,
        "first_committed_s": (observer.first_committed or first) - first,
        "committed_s": (observer.all_committed or first) - first,
        "finished_s": (observer.all_finished or first) - first,
        "lag_s": (observer.all_finished or last) - last,
        "rss_peak_mib": daemon.peak_rss_mib(),
        "store_transactions": status["store_transactions"],
        "store_batches": status["store_batches"],
        "polls": observer.polls,
    } | exactly_once(daemon.db_path, files)


def land(incoming: Path, staging: Path, files: int, spread: float) -> tuple[float, float]:
    """Write each file outside the folder, rename it in, evenly over `spread` seconds.

    Returns the `perf_counter` after the first and after the last rename.
    """
    started = time.perf_counter()
    landed: list[float] = []
    for index in range(files):
        pause = started + spread * index / files - time.perf_counter()
        if pause > 0:
            time.sleep(pause)
        name = f"part-{index:05d}.csv"
        (staging / name).write_text(f"id,value\n{index},{index * index}\n")
        os.rename(staging / name, incoming / name)
        landed.append(time.perf_counter())
    return landed[0], landed[-1]


def exactly_once(db_path: Path, files: int) -> dict[str, Any]:
    """Events, runs, failures, and whether every landed file is in exactly one run."""
    queries = {
        "events": "SELECT count(*) FROM events",
        "runs": "SELECT count(*) FROM runs",
        "event_runs": "SELECT count(DISTINCT run_id) FROM events",
        "files_in_runs": "SELECT count(DISTINCT json_extract(conf, '$.name')) FROM runs",
        "failed": "SELECT count(*) FROM runs WHERE state != 'success'",
    }
    with closing(connect_readonly(db_path)) as connection:
        counts = {key: connection.execute(sql).fetchone()[0] for key, sql in queries.items()}
    counts["exactly_once"] = all(
        counts[key] == files for key in ("events", "runs", "event_runs", "files_in_runs")
    )
    return counts


# -- the report ---------------------------------------------------------------------------------


def row(label: str, cells: list[str], median: str, target: str = "") -> None:
    print(f"  {label:<36}" + "".join(f"{c:>11}" for c in cells) + f"{median:>12}   {target}")


def seconds_row(label: str, results: list[dict[str, Any]], key: str) -> None:
    values = [r[key] for r in results]
    row(label, [f"{v:.2f} s" for v in values], f"{statistics.median(values):.2f} s")


def report(results: list[dict[str, Any]], options: argparse.Namespace) -> None:
    print(
        f"burst: {options.files:,} files renamed into one folder over ~{options.spread:g} s;"
        " one DAG, run_on=FileTrigger(*.csv),\n  max_active_runs=4, one in-process task;"
        " the daemon as a subprocess, synchronous=FULL;\n  the database polled every"
        f" {1000 * POLL_SECONDS:g} ms (the resolution of the times below)"
    )
    row("", [f"run {i + 1}" for i in range(len(results))], "median", "target")
    seconds_row("landing took (first -> last file)", results, "landing_s")
    first = [1000 * r["first_committed_s"] for r in results]
    median = f"{statistics.median(first):.0f} ms"
    row("first landed -> first run committed", [f"{v:.0f} ms" for v in first], median)
    seconds_row("first landed -> all runs committed", results, "committed_s")
    seconds_row("first landed -> all runs finished", results, "finished_s")
    seconds_row("  last landed -> all runs finished", results, "lag_s")
    rates = [options.files / r["finished_s"] for r in results]
    row(
        "throughput, end to end", [f"{v:.0f}/s" for v in rates], f"{statistics.median(rates):.0f}/s"
    )
    report_counts(results, options.files)
    rss = [r["rss_peak_mib"] for r in results]
    row(
        "daemon peak RSS (VmHWM)",
        [f"{v:.0f} MiB" for v in rss],
        f"{statistics.median(rss):.0f} MiB",
    )
    seconds_row("SIGTERM -> daemon exited", results, "stop_s")


def report_counts(results: list[dict[str, Any]], files: int) -> None:
    failed = [r["failed"] for r in results]
    row("failed runs", [str(v) for v in failed], "", f"0: {verdict(not any(failed))}")
    pairs = [f"{r['events']}/{r['runs']}" for r in results]
    once = all(r["exactly_once"] for r in results)
    row("events / runs", pairs, "", f"{files}/{files}, one file each: {verdict(once)}")
    for key, label in (("store_transactions", "transactions"), ("store_batches", "batches")):
        values = [r[key] for r in results]
        median = statistics.median(values)
        row(f"store {label} (per run)", [str(v) for v in values], f"{median / files:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="one burst of 200 files: a smoke run")
    parser.add_argument("--repeat", type=int, help="bursts, median reported (3; --quick: 1)")
    parser.add_argument("--files", type=int, help="files per burst (1,000; --quick: 200)")
    parser.add_argument("--spread", type=float, default=1.0, help="seconds the landing takes")
    parser.add_argument("--verbose", action="store_true", help="show the daemon's log")
    options = parser.parse_args()
    options.repeat = options.repeat or (1 if options.quick else 3)
    options.files = options.files or (200 if options.quick else 1_000)
    stop_on_signals()
    print(f"machine: {machine()}")
    print(f"command: {' '.join([Path(sys.executable).name, *sys.argv])}")
    print(f"load average at start: {load_average()}")
    results = []
    for index in range(options.repeat):
        print(f"  ... burst {index + 1} of {options.repeat}", file=sys.stderr, flush=True)
        results.append(one_burst(options.files, options.spread, options.verbose))
    report(results, options)
    print(f"load average at end: {load_average()}")


if __name__ == "__main__":
    main()
