"""An idle daemon: what 10 run triggers and 1,000 deferred sensors cost while nothing happens.

    .venv/bin/python bench/idle_daemon.py [--quick] [--window SECONDS] [--verbose]

`orchestrator daemon` runs as a real child process with 10 DAGs started by a `run_on`
FileTrigger, each on a folder of its own, and one DAG whose only task is a FileSensor
(deferrable) on a folder where nothing lands, `max_active_runs=1000`. 1,000 runs of it are
triggered through the control socket (`{"op": "trigger"}`); once the status says 1,000
deferred triggers and the store has stopped writing, the daemon is left alone for `--window`
seconds (60; `--quick`: 10) and measured from outside:

- CPU of the daemon process, all its threads (utime + stime of /proc/<pid>/stat over the wall
  time, as % of one core), and by thread (/proc/<pid>/task/*/stat, named by their `comm`),
  so the cost can be attributed; exact on-CPU time per thread from `schedstat` beside it;
- the CPU of its child processes, if it has any;
- store writes (the status' `store_transactions` before and after: target 0).

Targets: < 1 % of one core and 0 store writes. Nothing here asserts; the figures are printed.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import anyio
from burst import Daemon, load_average, proc_status_kib, stop_on_signals, verdict
from machine import machine  # bench/ is on the path when a script runs

from orchestrator.daemon.control import control_path, request

WATCHED_DAGS = 10
WAITING_RUNS = 1_000
NEAR_ZERO_CPU = 1.0  # % of one core
QUIET_SECONDS = 2.0  # no store write for this long: every sensor has deferred and settled
TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK")
SHOWN_THREADS = 12

DAG_FILE = """\
from orchestrator import DAG, task
from sensors import FileSensor
from triggers import FileTrigger

WATCHED = {watched!r}


@task(in_process=True)
def note(context) -> str:
    return context.conf["path"]


for index in range({dags}):
    watched = FileTrigger(directory=f"{{WATCHED}}/d{{index:02d}}", pattern="*.csv")
    with DAG(f"watched_{{index:02d}}", run_on=watched):
        note()

with DAG("waiting", max_active_runs={runs}):
    FileSensor(task_id="never", directory={never!r}, pattern="*.csv")
"""

# -- CPU from /proc --------------------------------------------------------------------------------


@dataclass(frozen=True)
class ThreadCpu:
    """One thread's CPU so far (or over a window, as the difference of two).

    `ticks` is utime + stime from `stat`; `on_cpu_ns` and `slices` (times it was scheduled in,
    about its wake-ups) come from `schedstat`, which is exact where ticks are sampled.
    """

    name: str
    ticks: int = 0
    on_cpu_ns: int = 0
    slices: int = 0

    def __sub__(self, earlier: ThreadCpu) -> ThreadCpu:
        return ThreadCpu(
            self.name,
            self.ticks - earlier.ticks,
            self.on_cpu_ns - earlier.on_cpu_ns,
            self.slices - earlier.slices,
        )

    def __add__(self, other: ThreadCpu) -> ThreadCpu:
        return ThreadCpu(
            self.name,
            self.ticks + other.ticks,
            self.on_cpu_ns + other.on_cpu_ns,
            self.slices + other.slices,
        )


def stat_fields(path: Path) -> list[str]:
    """The fields of a /proc `stat` file after the command name, which may hold spaces.

    Index 0 is field 3 (state) of proc(5), so utime (field 14) is index 11, stime index 12.
    """
    return path.read_text().rsplit(")", 1)[1].split()


def process_ticks(pid: int) -> int:
    """utime + stime of the whole process: every thread, ended ones too."""
    fields = stat_fields(Path(f"/proc/{pid}/stat"))
    return int(fields[11]) + int(fields[12])


def thread_cpu(pid: int) -> dict[int, ThreadCpu]:
    """Each live thread of `pid` by its id."""
    threads = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            fields = stat_fields(task / "stat")
            name = (task / "comm").read_text().strip()
            on_cpu_ns, _, slices = (task / "schedstat").read_text().split()
        except OSError:
            continue  # the thread ended while we looked
        ticks = int(fields[11]) + int(fields[12])
        threads[int(task.name)] = ThreadCpu(name, ticks, int(on_cpu_ns), int(slices))
    return threads


def children_ticks(pid: int) -> dict[int, int]:
    """utime + stime of each live child process of `pid` (worker processes, if any)."""
    children = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdecimal():
            continue
        try:
            fields = stat_fields(entry / "stat")
        except OSError:
            continue
        if int(fields[1]) == pid:
            children[int(entry.name)] = int(fields[11]) + int(fields[12])
    return children


@dataclass(frozen=True)
class CpuSnapshot:
    """Everything CPU of the daemon at one moment, and the wall clock then."""

    pid: int
    wall: float
    process: int
    threads: dict[int, ThreadCpu]
    children: dict[int, int]

    @classmethod
    def take(cls, pid: int) -> CpuSnapshot:
        wall = time.monotonic()
        return cls(pid, wall, process_ticks(pid), thread_cpu(pid), children_ticks(pid))


# -- setting the daemon up -------------------------------------------------------------------------


def prepare(root: Path) -> None:
    """The DAG file and the folders its triggers and sensors watch."""
    watched, never = root / "watched", root / "never"
    for index in range(WATCHED_DAGS):
        (watched / f"d{index:02d}").mkdir(parents=True)
    never.mkdir()
    (root / "dags").mkdir()
    text = DAG_FILE.format(
        dags=WATCHED_DAGS, watched=str(watched), never=str(never), runs=WAITING_RUNS
    )
    (root / "dags" / "idle.py").write_text(text)


async def trigger_runs(socket: Path, dag_id: str, count: int) -> None:
    """`count` runs through the control socket, one request each, as `orchestrator trigger`."""
    for _ in range(count):
        await request(socket, {"op": "trigger", "dag_id": dag_id})


def arm(daemon: Daemon) -> dict[str, Any]:
    """Start the runs and wait until every sensor is deferred and the store is quiet."""
    daemon.wait_ready()
    daemon.wait_status(lambda s: s["run_triggers"] == WATCHED_DAGS, "the run triggers")
    started = time.perf_counter()
    anyio.run(partial(trigger_runs, control_path(daemon.state_dir), "waiting", WAITING_RUNS))
    triggered = time.perf_counter()
    daemon.wait_status(lambda s: s["deferred_triggers"] == WAITING_RUNS, "every sensor deferred")
    deferred = time.perf_counter()
    wait_quiet(daemon)
    return {
        "trigger_s": triggered - started,
        "deferred_s": deferred - started,
        "quiet_s": time.perf_counter() - started,
    }


def wait_quiet(daemon: Daemon) -> None:
    """Until the store has not written for `QUIET_SECONDS`: the tail of the deferrals is done."""
    last = daemon.ask("status")["store_transactions"]
    quiet_since = time.monotonic()
    while time.monotonic() - quiet_since < QUIET_SECONDS:
        time.sleep(0.1)
        now = daemon.ask("status")["store_transactions"]
        if now != last:
            last, quiet_since = now, time.monotonic()


# -- the idle window -------------------------------------------------------------------------------


def idle_window(daemon: Daemon, seconds: float) -> dict[str, Any]:
    """Leave the daemon alone for `seconds`; its CPU and store writes meanwhile.

    The status requests fall outside the CPU window: answering them is not idling.
    """
    before = daemon.ask("status")
    start = CpuSnapshot.take(daemon.pid)
    time.sleep(seconds)
    end = CpuSnapshot.take(daemon.pid)
    after = daemon.ask("status")
    return {
        "start": start,
        "end": end,
        "status": after,
        "transactions": after["store_transactions"] - before["store_transactions"],
        "batches": after["store_batches"] - before["store_batches"],
        "rss_mib": proc_status_kib(daemon.pid, "VmRSS") / 1024,
        "rss_peak_mib": daemon.peak_rss_mib(),
    }


# -- the report ------------------------------------------------------------------------------------


def percent(ticks: int, wall: float) -> float:
    return 100 * ticks / TICKS_PER_SECOND / wall


def line(label: str, value: str, target: str = "") -> None:
    print(f"  {label:<42}{value:>14}   {target}".rstrip())


def report(armed: dict[str, Any], idle: dict[str, Any]) -> None:
    status = idle["status"]
    print(
        f"idle daemon: {WATCHED_DAGS} DAGs with a run_on FileTrigger (a folder each), and"
        f" {WAITING_RUNS:,} runs of a DAG\n  whose FileSensor waits on a folder where nothing"
        " lands; the daemon as a subprocess,\n  measured from /proc"
    )
    line(f"{WAITING_RUNS:,} triggers over the control socket", f"{armed['trigger_s']:.2f} s")
    line(f"  -> {WAITING_RUNS:,} deferred (status)", f"{armed['deferred_s']:.2f} s")
    line(f"  -> no store write for {QUIET_SECONDS:g} s", f"{armed['quiet_s']:.2f} s")
    line("active runs / deferred / run triggers", "{active_runs} / {deferred_triggers} / "
         "{run_triggers}".format(**status))  # fmt: skip
    line("daemon RSS now / peak", f"{idle['rss_mib']:.0f} / {idle['rss_peak_mib']:.0f} MiB")
    report_cpu(idle)
    writes = idle["transactions"]
    value = f"{writes} ({idle['batches']} batches)"
    line("store transactions while idle", value, f"0: {verdict(writes == 0)}")


def report_cpu(idle: dict[str, Any]) -> None:
    start, end = idle["start"], idle["end"]
    wall = end.wall - start.wall
    total = percent(end.process - start.process, wall)
    target = f"< {NEAR_ZERO_CPU:g} %: {verdict(total < NEAR_ZERO_CPU)}"
    line(f"idle CPU over {wall:.1f} s, % of one core", f"{total:.2f} %", target)
    report_threads(start, end, wall)
    report_children(start, end, wall)


def report_threads(start: CpuSnapshot, end: CpuSnapshot, wall: float) -> None:
    """The busiest threads first; the main thread (tid == pid) runs the event loop."""
    used = {
        tid: thread - start.threads.get(tid, ThreadCpu(thread.name))  # new ones started at 0
        for tid, thread in end.threads.items()
    }
    busiest = sorted(used, key=lambda tid: used[tid].on_cpu_ns, reverse=True)
    print(
        f"  by thread ({len(used)}; Python 3.11 names its threads `python`, the main one runs"
        " the loop):\n      tid  comm                 utime+stime   schedstat   wake-ups/s"
    )
    for tid in busiest[:SHOWN_THREADS]:
        label = f"{used[tid].name}{' (loop)' if tid == end.pid else ''}"
        thread_line(str(tid), label, used[tid], wall)
    rest = [used[tid] for tid in busiest[SHOWN_THREADS:]]
    if rest:
        thread_line("", f"{len(rest)} more", sum(rest, ThreadCpu("")), wall)


def thread_line(tid: str, name: str, use: ThreadCpu, wall: float) -> None:
    exact = 100 * use.on_cpu_ns / 1e9 / wall
    print(
        f"    {tid:>5}  {name:<22} {percent(use.ticks, wall):9.2f} % {exact:9.3f} %"
        f" {use.slices / wall:10.0f}"
    )


def report_children(start: CpuSnapshot, end: CpuSnapshot, wall: float) -> None:
    if not end.children:
        line("child processes", "none")
        return
    ticks = sum(t - start.children.get(pid, 0) for pid, t in end.children.items())
    line(f"child processes ({len(end.children)}), CPU", f"{percent(ticks, wall):.2f} %")


# -- main ------------------------------------------------------------------------------------------


def measure(window: float, verbose: bool) -> tuple[dict[str, Any], dict[str, Any]]:
    with tempfile.TemporaryDirectory(prefix="idle-daemon-") as folder:
        root = Path(folder)
        prepare(root)
        daemon = Daemon(root)
        try:
            with daemon:
                armed = arm(daemon)
                print(f"  ... armed; idle for {window:g} s", file=sys.stderr, flush=True)
                return armed, idle_window(daemon, window)
        finally:
            if verbose:
                sys.stderr.write(daemon.log())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a 10 s window: a smoke run")
    parser.add_argument("--window", type=float, help="idle seconds measured (60; --quick: 10)")
    parser.add_argument("--verbose", action="store_true", help="show the daemon's log")
    options = parser.parse_args()
    window = options.window or (10.0 if options.quick else 60.0)
    stop_on_signals()
    print(f"machine: {machine()}")
    print(f"command: {' '.join([Path(sys.executable).name, *sys.argv])}")
    print(f"load average at start: {load_average()}")
    armed, idle = measure(window, options.verbose)
    report(armed, idle)
    print(f"load average at end: {load_average()}")


if __name__ == "__main__":
    main()
