"""Deferral at scale: many waiting sensors in one engine, what they cost, how fast they wake.

    .venv/bin/python bench/deferral.py [--quick] [--idle SECONDS] [--repeat 3]
                                       [--profile] [--verbose]

Prints each figure beside its target (PASS/MISS, or RERUN: no pass above a load average of
1.0, see `machine.py`); asserts nothing:

(a) N sensors deferred at once in one engine (N = 1,000 and 100,000; `--quick`: 2,000): 100
    DAGs of N/100 sensors, one run each, as a folder of pipelines that each wait on many
    inputs. In each DAG half the sensors are `FileSensor`s on that DAG's own directory (one
    file name each), so 100 watched directories; the other half wait a day, half
    `TimeDeltaSensor`, half `DateTimeSensor`. Measured: trigger -> every trigger hosted, and
    -> every trigger waiting (file triggers' folders watched and listed, time triggers in
    the heap), with CPU by thread and the garbage collector's share; RSS (targets at 100,000:
    <= 400 MiB, <= 4 KiB per sensor, waiting within 5 s: the median of `--repeat` armings,
    each in a fresh process, the others with a 1 s idle window); CPU of the whole process over
    `--idle` seconds (60) of waiting, split by thread (target < 0.15 % of a core); store
    writes while idle; slots; then file landed -> its sensor succeeded, 20 files one at a
    time, with all the others still waiting (p50 <= 5 ms).
(b) File -> downstream latency: FileSensor -> an async task that notes when it starts. Each
    file gets its own run: trigger, wait until the sensor is deferred, write the file in a
    staging folder and `os.replace` it in. Done twice: landing at once (the trigger may still
    be starting, its first listing finds the file), and landing once the trigger watches.
(c) Restart: arm N = 100,000 (as in (a); `--quick`: 2,000), stop the engine, then open
    engines on that state directory and time `Engine.open` -> every trigger hosted and
    waiting again (median of `--repeat` re-opens; target <= 10 s at 100,000).
(d) Time sensor precision: a DateTimeSensor 50 ms ahead on the real clock, one run at a time;
    delay from the moment to the downstream task's start.

Each case runs in a child process of its own, so peak RSS is that case's alone; the child
prints one JSON line back. The engine runs with the default `synchronous=FULL`, 2 slots, the
system clock and DAGs built in Python (no DAG folder to import).
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import json
import os
import pstats
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import anyio
from machine import load_average, machine, verdict  # bench/ is on the path when run

import triggers.file_states
from orchestrator import DAG, TaskContext, dag, task
from orchestrator.config import Settings
from orchestrator.loading.dagbag import DagBag
from orchestrator.scheduling.engine import Engine
from orchestrator.state import TaskState
from orchestrator.store import SqliteStore
from sensors.file import FileSensor
from sensors.time import DateTimeSensor, TimeDeltaSensor
from triggers.file_states import scan_directory
from triggers.watch import watch_statistics

DIRECTORIES = 100
DAY = 86_400.0
# % of one core while idle: 20x below Airflow's whole idle stack (3.3 %), issue #17.
NEAR_ZERO_CPU = 0.15
LATENCY_P50_MS = 5.0  # file landed -> downstream task started, at the median
# Issue #17 at N=100,000: RSS, RSS per sensor, arming and re-arming after a restart.
RSS_MIB = 400
PER_SENSOR_KIB = 4.0
ARM_S = 5.0
REARM_S = 10.0
RESULT = "RESULT "

# -- instruments ------------------------------------------------------------------------------


class ScanCounter:
    """Counts directory listings done for file triggers (alone, or by their folder's host).

    Installed over `triggers.file_states.scan_directory` (the benchmark's only patch): a
    folder is listed once its OS watch is in place, for the triggers waiting on it.
    """

    def __init__(self) -> None:
        self.done = 0
        self._lock = threading.Lock()  # listings run in worker threads

    def install(self) -> None:
        def counted(root: str, recursive: bool) -> Any:
            try:
                return scan_directory(root, recursive)
            finally:
                with self._lock:
                    self.done += 1

        triggers.file_states.scan_directory = counted  # type: ignore[assignment]


class GcTimer:
    """Seconds spent in the cyclic garbage collector, and its full (generation 2) passes."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.full = 0
        self._started = 0.0

    def install(self) -> None:
        if self._note not in gc.callbacks:
            gc.callbacks.append(self._note)

    def _note(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            return
        self.seconds += time.perf_counter() - self._started
        self.full += info["generation"] == 2

    def figures(self) -> dict[str, float]:
        return {"gc_s": self.seconds, "gc_full": self.full}


SCANS = ScanCounter()
GC = GcTimer()
STARTED: dict[str, float] = {}  # run id -> perf_counter when its downstream task started
WOKE: list[float] = []  # seconds from a time sensor's moment to its downstream task's start


def rss_now_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def rss_peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def thread_cpu_seconds() -> dict[str, float]:
    """CPU seconds so far: the event loop's thread, the file-watch threads, and all the rest.

    Per-thread CPU clocks are exact; /proc's per-thread ticks are not, for threads that wake
    every millisecond for a few microseconds.
    """
    main = threading.main_thread()
    totals = {"loop": 0.0, "watches": 0.0}
    for thread in threading.enumerate():
        try:
            seconds = time.clock_gettime(time.pthread_getcpuclockid(thread.ident or 0))
        except OSError:
            continue  # the thread ended while we looked
        if thread is main:
            totals["loop"] += seconds
        elif thread.name.startswith("file-watch"):
            totals["watches"] += seconds
    # notify's own threads, anyio's worker threads, the store's: what the two above leave.
    totals["other"] = time.process_time() - totals["loop"] - totals["watches"]
    return totals


def os_threads() -> int:
    return len(os.listdir("/proc/self/task"))


async def until(condition: Callable[[], bool], *, within: float, what: str) -> float:
    """Check `condition` every millisecond; the perf_counter when it first held.

    Polling, because what is watched (counters of the triggerer, the watches, the clock) has
    no event to wait on; a millisecond is the resolution of the figures that use it.
    """
    try:
        with anyio.fail_after(within):
            while not condition():  # noqa: ASYNC110
                await anyio.sleep(0.001)
    except TimeoutError:
        raise SystemExit(f"gave up after {within:g} s waiting for {what}") from None
    return time.perf_counter()


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


@contextmanager
def profiled(enabled: bool, label: str) -> Iterator[None]:
    """cProfile the event loop's thread, top functions to stderr (with `--profile`)."""
    if not enabled:
        yield
        return
    profile = cProfile.Profile()
    profile.enable()
    try:
        yield
    finally:
        profile.disable()
        print(f"--- profile: {label} ---", file=sys.stderr)
        stats = pstats.Stats(profile, stream=sys.stderr)
        stats.sort_stats("tottime").print_stats(25)
        stats.sort_stats("cumulative").print_stats(40)


# -- engines and DAGs ---------------------------------------------------------------------------


def settings_for(root: Path, capacity: int) -> Settings:
    return Settings(
        state_dir=root / "state",
        dags_folder=root / "dags",
        slots=2,
        in_process=True,
        triggerer_capacity=max(capacity, 1),
    )


def bag_of(root: Path, dags: list[DAG]) -> DagBag:
    return DagBag(root, {d.dag_id: d for d in dags}, {d.dag_id: d.site.file for d in dags})


def armed_dags(n: int, directories: list[Path]) -> list[DAG]:
    per_dag = n // len(directories)
    moment = time.time() + DAY
    return [_armed_dag(i, folder, per_dag, moment) for i, folder in enumerate(directories)]


def _armed_dag(index: int, directory: Path, per_dag: int, moment: float) -> DAG:
    with DAG(f"armed_{index:03d}") as pipeline:
        for i in range(per_dag // 2):
            FileSensor(task_id=f"file_{i}", directory=str(directory), pattern=f"part_{i}.csv")
        for i in range(per_dag - per_dag // 2):
            if i % 2:
                TimeDeltaSensor(task_id=f"delta_{i}", delta=DAY)
            else:
                DateTimeSensor(task_id=f"moment_{i}", target_time=moment + i)
    return pipeline


def make_directories(root: Path, count: int) -> list[Path]:
    directories = [root / "watched" / f"d{i:03d}" for i in range(count)]
    for directory in directories:
        directory.mkdir(parents=True)
    return directories


def all_waiting(engine: Engine, n: int) -> Callable[[], bool]:
    """True once every trigger is hosted and waits: its folder watched and listed, or its
    moment in the timer heap (`settling`: shared hosts still setting up a wait)."""

    def check() -> bool:
        statistics = engine.triggerer.statistics()
        return (
            statistics.running == n
            and statistics.settling == 0
            and watch_statistics().os_watches == DIRECTORIES
        )

    return check


async def arm(engine: Engine, dags: list[DAG], n: int) -> dict[str, float]:
    """Trigger one run per DAG; seconds until every trigger is hosted, and waiting."""
    gc.freeze()  # as the daemon does once started (`_freeze_startup_objects`): DAGs, modules
    GC.install()
    cpu = thread_cpu_seconds()
    started = time.perf_counter()
    for pipeline in dags:
        await engine.trigger(pipeline.dag_id)
    triggered = time.perf_counter()
    hosted = await until(
        lambda: engine.triggerer.statistics().running == n, within=600, what="hosting"
    )
    waiting = await until(all_waiting(engine, n), within=600, what="every trigger waiting")
    return {
        "trigger_s": triggered - started,
        "hosted_s": hosted - started,
        "waiting_s": waiting - started,
        # CPU seconds, by thread: what arming costs whatever else the machine is doing.
        "cpu_s": {k: v - cpu[k] for k, v in thread_cpu_seconds().items()},
        **GC.figures(),
    }


# -- (a) N deferred ---------------------------------------------------------------------------


async def deferred_case(options: argparse.Namespace) -> dict[str, Any]:
    n = options.n
    SCANS.install()
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        directories = make_directories(root, DIRECTORIES)
        dags = armed_dags(n, directories)
        (root / "staging").mkdir()
        figures: dict[str, Any] = {"n": n, "rss_before_mib": rss_now_mib()}
        async with Engine.open(settings_for(root, n), dagbag=bag_of(root, dags)) as e:
            with profiled(options.profile, f"arming {n}"):
                figures |= await arm(e, dags, n)
            figures |= armed_figures(e)
            with profiled(options.profile, f"idle {n}"):
                figures |= await idle_window(e, options.idle)
            figures["landed_ms"] = await land_among(e, directories, root / "staging", 20)
        return figures


async def land_among(
    engine: Engine, directories: list[Path], staging: Path, count: int
) -> list[float]:
    """Ms from a file landing to its sensor's success being committed, all the others waiting.

    One file at a time, each in another DAG's folder, named for one of its sensors.
    """
    latencies = []
    async with engine.subscribe() as changes:
        for index in range(count):
            sensor = index // DIRECTORIES  # the first sensors of the first DAGs
            dag_id, name = f"armed_{index % DIRECTORIES:03d}", f"part_{sensor}.csv"
            staged = staging / name
            staged.write_bytes(b"x,y\n1,2\n")
            landed = time.perf_counter()
            os.replace(staged, directories[index % DIRECTORIES] / name)
            with anyio.fail_after(10):
                async for change in changes:
                    if getattr(change, "task_id", None) == f"file_{sensor}" and (
                        change.dag_id == dag_id and change.state is TaskState.SUCCESS
                    ):
                        break
            latencies.append((time.perf_counter() - landed) * 1000)
    return latencies


def armed_figures(engine: Engine) -> dict[str, Any]:
    watches = watch_statistics()
    triggerer = engine.triggerer.statistics()
    return {
        "rss_armed_mib": rss_now_mib(),
        "rss_peak_mib": rss_peak_mib(),
        "os_watches": watches.os_watches,
        "watch_subscribers": watches.subscribers,
        "polling_watches": watches.polling,
        "notifiers": getattr(watches, "notifiers", None),  # threads driving the OS watches
        "os_threads": os_threads(),
        "running": triggerer.running,
        "failed": triggerer.failed,
        "fired": triggerer.fired,
        "blocked_s": engine.watchdog.blocked_seconds,  # loop blocked past the watchdog's 0.2 s
        "blocks": engine.watchdog.blocks,
    }


def store_transactions(engine: Engine) -> int:
    """Write transactions so far (the `Store` protocol has no `statistics()`; SQLite's has)."""
    store = engine.store
    if not isinstance(store, SqliteStore):
        raise SystemExit(f"cannot count the writes of a {type(store).__name__}")
    return store.statistics().transactions


async def idle_window(engine: Engine, seconds: float) -> dict[str, Any]:
    """CPU (whole process, and by thread) and store writes over `seconds` of doing nothing."""
    transactions = store_transactions(engine)
    threads = thread_cpu_seconds()
    cpu, wall = time.process_time(), time.perf_counter()
    await anyio.sleep(seconds)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    after = thread_cpu_seconds()
    return {
        "idle_s": wall,
        "idle_cpu_pct": 100 * cpu / wall,
        "idle_by_thread_pct": {k: 100 * (after[k] - threads[k]) / wall for k in after},
        "idle_transactions": store_transactions(engine) - transactions,
        "slots_used": engine.scheduler.slots_used,
        "fired_by_end": engine.triggerer.statistics().fired,
    }


# -- (b) file -> downstream ---------------------------------------------------------------------


@task
async def note_start(event: dict[str, Any], context: TaskContext) -> None:
    STARTED[context.run_id] = time.perf_counter()


def landing_dag(incoming: Path) -> DAG:
    with DAG("landing") as pipeline:
        landed = FileSensor(task_id="landed", directory=str(incoming), pattern="*.csv")
        note_start(landed.output)
    return pipeline


async def file_case(options: argparse.Namespace) -> dict[str, Any]:
    SCANS.install()
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        incoming, staging = root / "incoming", root / "staging"
        incoming.mkdir()
        staging.mkdir()
        bag = bag_of(root, [landing_dag(incoming)])
        async with Engine.open(settings_for(root, 10), dagbag=bag) as engine:
            with profiled(options.profile, "file latency"):
                at_once = await land_files(engine, incoming, staging, options.count, False)
                watching = await land_files(engine, incoming, staging, options.count, True)
    return {"count": options.count, "at_once": at_once, "watching": watching}


async def land_files(
    engine: Engine, incoming: Path, staging: Path, count: int, watching: bool
) -> dict[str, list[float]]:
    """Land `count` files, one run each: landing -> downstream, and deferred -> watching, ms."""
    latencies, arming = [], []
    for index in range(count):
        latency, armed = await land_one(engine, incoming, staging, index, watching)
        latencies.append(latency)
        arming.extend([armed] if armed is not None else [])
    return {"latency_ms": latencies, "arming_ms": arming}


async def land_one(
    engine: Engine, incoming: Path, staging: Path, index: int, watching: bool
) -> tuple[float, float | None]:
    """Ms from a file landing to its run's downstream task starting (and to watching)."""
    scans = SCANS.done
    run_id = await trigger_until_deferred(engine, "landing", "landed")
    armed = None
    if watching:
        deferred = time.perf_counter()
        listed = await until(lambda: SCANS.done > scans, within=10, what="the trigger's listing")
        armed = (listed - deferred) * 1000
    name = f"{'w' if watching else 'a'}{index:04d}.csv"
    staged = staging / name
    staged.write_bytes(b"x,y\n1,2\n")  # a few bytes, before the clock starts
    landed = time.perf_counter()
    os.replace(staged, incoming / name)
    record = await engine.wait(run_id)
    (incoming / name).unlink()  # so the next run's sensor waits again
    if record.state != "success":
        raise SystemExit(f"landing run {run_id} ended {record.state}")
    return (STARTED.pop(run_id) - landed) * 1000, armed


async def trigger_until_deferred(engine: Engine, dag_id: str, task_id: str) -> str:
    """Trigger a run; return its id once the store shows `task_id` deferred."""
    with anyio.fail_after(10):
        async with engine.subscribe() as changes:
            run_id = await engine.trigger(dag_id)
            async for change in changes:
                if (
                    getattr(change, "task_id", None) == task_id
                    and change.run_id == run_id
                    and change.state is TaskState.DEFERRED
                ):
                    return run_id
    raise SystemExit(f"the change stream ended before {task_id} of {run_id} deferred")


# -- (c) restart ------------------------------------------------------------------------------


async def restart_case(options: argparse.Namespace) -> dict[str, Any]:
    n = options.n
    SCANS.install()
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        dags = armed_dags(n, make_directories(root, DIRECTORIES))
        bag, settings = bag_of(root, dags), settings_for(root, n)
        async with Engine.open(settings, dagbag=bag) as engine:
            first = await arm(engine, dags, n)
        samples = []
        for attempt in range(options.repeat):
            with profiled(options.profile and attempt == 0, f"re-arming {n}"):
                samples.append(await reopen(settings, bag, n))
    return {"n": n, "first_arm": first, "reopens": samples}


async def reopen(settings: Settings, bag: DagBag, n: int) -> dict[str, float]:
    """Open an engine on a state dir holding `n` deferred sensors: seconds until re-armed."""
    scans, gc_before = SCANS.done, GC.figures()
    GC.install()
    started = time.perf_counter()
    async with Engine.open(settings, dagbag=bag) as engine:
        opened = time.perf_counter()
        hosted = await until(
            lambda: engine.triggerer.statistics().running == n, within=600, what="re-hosting"
        )
        waiting = await until(all_waiting(engine, n), within=600, what="every trigger waiting")
        stopping = time.perf_counter()
    return {
        "listings": SCANS.done - scans,
        **{name: value - gc_before[name] for name, value in GC.figures().items()},
        "open_s": opened - started,
        "hosted_s": hosted - started,
        "waiting_s": waiting - started,
        "stop_s": time.perf_counter() - stopping,
    }


# -- (d) time sensor precision ------------------------------------------------------------------


@task
async def note_wake(event: dict[str, Any]) -> None:
    WOKE.append(time.time() - event["moment"])


def _timed(at: float = 0.0) -> None:
    note_wake(DateTimeSensor(task_id="at", target_time=at).output)


def timed_dag() -> DAG:
    """`timed(at)`: a run waits until `at` (epoch seconds, from its conf), then notes the delay."""
    built: DAG = dag(_timed, dag_id="timed")()
    return built


async def time_case(options: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        bag = bag_of(root, [timed_dag()])
        async with Engine.open(settings_for(root, 10), dagbag=bag) as engine:
            with profiled(options.profile, "time precision"):
                for _ in range(options.count):
                    run_id = await engine.trigger("timed", conf={"at": time.time() + 0.050})
                    record = await engine.wait(run_id)
                    if record.state != "success":
                        raise SystemExit(f"timed run {run_id} ended {record.state}")
    return {"count": options.count, "delay_ms": [1000 * delay for delay in WOKE]}


CASES: dict[str, Callable[[argparse.Namespace], Awaitable[dict[str, Any]]]] = {
    "deferred": deferred_case,
    "file": file_case,
    "restart": restart_case,
    "time": time_case,
}


# -- the parent: one child process per case, then the figures -----------------------------------


def run_child(case: str, options: argparse.Namespace, **values: float) -> dict[str, Any]:
    """Run one case in a fresh interpreter and return the figures it printed.

    The child's log (the watchdog's warnings, a watch falling back to polling) is shown with
    `--verbose` or `--profile`, or when the case fails.
    """
    flags = [f"--{name}={value}" for name, value in values.items()]
    if options.profile:
        flags.append("--profile")
    command = [sys.executable, __file__, "--case", case, "--idle", str(options.idle), *flags]
    print(f"  ... {case} {' '.join(flags)}", file=sys.stderr, flush=True)
    completed = subprocess.run(command, capture_output=True, text=True, check=False)
    if options.verbose or options.profile or completed.returncode != 0:
        sys.stderr.write(completed.stderr)
    for line in reversed(completed.stdout.splitlines()):
        if line.startswith(RESULT) and completed.returncode == 0:
            figures: dict[str, Any] = json.loads(line.removeprefix(RESULT))
            figures["log_lines"] = len(completed.stderr.splitlines())
            return figures
    raise SystemExit(f"case {case} failed (exit {completed.returncode}):\n{completed.stdout}")


def row(label: str, *cells: str) -> None:
    print(f"  {label:<38}" + "".join(f"{cell:>16}" for cell in cells[:-1]) + f"   {cells[-1]}")


def report_deferred(results: list[dict[str, Any]], idle: float, arms: list[float]) -> None:
    print(
        "(a) N deferred sensors in one engine: 100 DAGs x N/100 sensors, one run each;"
        " half FileSensor\n    (100 directories), half TimeDeltaSensor/DateTimeSensor a day ahead"
    )
    row("", *[f"N={r['n']:,}" for r in results], "target")
    row("trigger() x 100 returned", *[f"{r['trigger_s']:.2f} s" for r in results], "")
    row("-> all N hosted (running == N)", *[f"{r['hosted_s']:.2f} s" for r in results], "")
    row("-> all N waiting (listed / asleep)", *[f"{r['waiting_s']:.2f} s" for r in results], "")
    watches_ok = all(r["os_watches"] == DIRECTORIES for r in results)
    row(
        "watched directories (subscribers)",
        *[f"{r['os_watches']} ({r['watch_subscribers']:,})" for r in results],
        f"{DIRECTORIES}, not N: {verdict(watches_ok)}",
    )
    row("notifier threads driving them", *[str(r["notifiers"]) for r in results], "")
    row("RSS before trigger / armed, MiB", *[rss_pair(r) for r in results], "")
    largest = max(results, key=lambda r: r["n"])
    big = largest["n"] >= 100_000
    per_sensor = (largest["rss_armed_mib"] - largest["rss_before_mib"]) * 1024 / largest["n"]
    kib_target = f"<= {PER_SENSOR_KIB:g} KiB" + (f": {verdict(per_sensor <= PER_SENSOR_KIB)}" * big)
    row("RSS per deferred sensor", *[per_sensor_kib(r) for r in results], kib_target)
    rss_target = f"<= {RSS_MIB} MiB at N=100,000"
    if big:
        rss_target += f": {verdict(largest['rss_peak_mib'] <= RSS_MIB)}"
    row("peak RSS (ru_maxrss)", *[f"{r['rss_peak_mib']:.0f} MiB" for r in results], rss_target)
    arm_target = f"<= {ARM_S:g} s at N=100,000"
    if big:
        arm_target += f": {verdict(statistics.median(arms) <= ARM_S)}"
    row(
        f"  all waiting, median of {len(arms)}",
        *[f"{r['waiting_s']:.2f} s" for r in results[:-1]],
        f"{statistics.median(arms):.2f} s",
        arm_target,
    )
    print(f"    (N={largest['n']:,}: {', '.join(f'{arm:.2f}' for arm in arms)} s)")
    row(
        "loop / store thread CPU while arming",
        *[f"{r['cpu_s']['loop']:.1f} / {r['cpu_s']['other']:.1f} s" for r in results],
        "",
    )
    row(
        "GC while arming (full passes)",
        *[f"{r['gc_s']:.2f} s ({r['gc_full']})" for r in results],
        "",
    )
    report_idle(results, idle)
    for r in results:
        samples = r["landed_ms"]
        ok = statistics.median(samples) <= LATENCY_P50_MS
        print(
            f"  N={r['n']:,}: file landed -> its sensor succeeded ({len(samples)} files, the"
            f" others waiting)\n    {summary(samples)}   p50 <= {LATENCY_P50_MS:g}: {verdict(ok)}"
        )


def rss_pair(figures: dict[str, Any]) -> str:
    return f"{figures['rss_before_mib']:.0f} / {figures['rss_armed_mib']:.0f}"


def per_sensor_kib(figures: dict[str, Any]) -> str:
    grown = figures["rss_armed_mib"] - figures["rss_before_mib"]
    return f"{grown * 1024 / figures['n']:.1f} KiB"


def report_idle(results: list[dict[str, Any]], idle: float) -> None:
    cpu_ok = all(r["idle_cpu_pct"] < NEAR_ZERO_CPU for r in results)
    row(
        f"idle CPU over {idle:g} s, % of one core",
        *[f"{r['idle_cpu_pct']:.3f} %" for r in results],
        f"< {NEAR_ZERO_CPU:g} %: {verdict(cpu_ok)}",
    )
    for kind, label in (("loop", "event loop"), ("watches", "watch threads"), ("other", "other")):
        row(
            f"  of which {label}",
            *[f"{r['idle_by_thread_pct'][kind]:.3f} %" for r in results],
            "",
        )
    writes_ok = all(r["idle_transactions"] == 0 for r in results)
    row(
        "store transactions while idle",
        *[str(r["idle_transactions"]) for r in results],
        f"0: {verdict(writes_ok)}",
    )
    slots_ok = all(r["slots_used"] == 0 for r in results)
    row("worker slots used", *[str(r["slots_used"]) for r in results], f"0: {verdict(slots_ok)}")
    row(
        "triggers fired / failed; polling watches",
        *[f"{r['fired_by_end']} / {r['failed']}; {r['polling_watches']}" for r in results],
        "0 / 0; 0",
    )
    row(
        "loop blocked > 0.2 s (watchdog), total",
        *[f"{r['blocked_s']:.1f} s ({r['blocks']}x)" for r in results],
        "",
    )
    row("OS threads of the process", *[str(r["os_threads"]) for r in results], "")


def summary(samples: list[float]) -> str:
    p50, p99 = statistics.median(samples), percentile(samples, 0.99)
    return f"p50 {p50:.1f}  p99 {p99:.1f}  max {max(samples):.1f} ms"


def report_file(figures: dict[str, Any]) -> None:
    count = figures["count"]
    print(
        f"(b) file landing -> downstream task start, {count} files, one run each"
        " (FileSensor -> async task)"
    )
    for key, label in (("at_once", "as soon as deferred"), ("watching", "once watching")):
        samples = figures[key]["latency_ms"]
        ok = statistics.median(samples) <= LATENCY_P50_MS and percentile(samples, 0.99) <= 50
        target = f"p50 <= {LATENCY_P50_MS:g}, p99 <= 50"
        print(f"  landed {label:<22} {summary(samples)}   {target}: {verdict(ok)}")
    arming = summary(figures["watching"]["arming_ms"])
    print(f"  (sensor deferred -> its trigger watching: {arming})")


def report_restart(figures: dict[str, Any]) -> None:
    n, reopens = figures["n"], figures["reopens"]
    print(f"(c) restart with {n:,} deferred sensors (as in (a)), {len(reopens)} re-opens")
    first = figures["first_arm"]
    print(
        f"  first arming: all hosted {first['hosted_s']:.2f} s, waiting {first['waiting_s']:.2f} s"
    )
    for key, label in (
        ("open_s", "Engine.open -> entered"),
        ("hosted_s", "Engine.open -> all hosted"),
        ("waiting_s", "Engine.open -> all waiting"),
        ("stop_s", "stopping the engine"),
        ("gc_s", "GC while re-arming"),
    ):
        samples = [reopen[key] for reopen in reopens]
        spread = ", ".join(f"{s:.2f}" for s in samples)
        target = ""
        if key == "waiting_s":
            ok = statistics.median(samples) <= REARM_S
            target = f"   <= {REARM_S:g} s at N=100,000: {verdict(ok)}" if n >= 100_000 else ""
        print(f"  {label:<28} median {statistics.median(samples):.2f} s  ({spread}){target}")


def report_time(figures: dict[str, Any]) -> None:
    samples = figures["delay_ms"]
    ok = percentile(samples, 0.99) <= 20
    print(f"(d) DateTimeSensor 50 ms ahead -> downstream start, {figures['count']} runs")
    print(f"  moment -> downstream start  {summary(samples)}   p99 <= 20 ms: {verdict(ok)}")


def run_all(options: argparse.Namespace) -> None:
    quick = options.quick
    sizes = [2_000] if quick else [1_000, 100_000]
    print(f"machine: {machine()}")
    print(f"command: {' '.join([Path(sys.executable).name, *sys.argv])}")
    print(f"load average at start: {load_average()}")
    print(
        "each case in its own process; synchronous=FULL, slots=2, system clock; (a) single"
        " runs but its arming at the largest N (--repeat runs), (c) --repeat re-opens, (b) and"
        " (d) percentiles over every run"
    )
    report_time(run_child("time", options, count=20 if quick else 100))
    report_file(run_child("file", options, count=50 if quick else 200))
    restart_n = 2_000 if quick else 100_000
    report_restart(run_child("restart", options, n=restart_n, repeat=options.repeat))
    results = [run_child("deferred", options, n=n) for n in sizes]
    report_deferred(results, options.idle, armings(results[-1], options))
    print(f"load average at end: {load_average()}")


def armings(first: dict[str, Any], options: argparse.Namespace) -> list[float]:
    """Seconds to arm the largest N, `--repeat` times: (a)'s run and as many more, each in a
    fresh process with a 1 s idle window (the arming is the same; its median is the figure)."""
    again = argparse.Namespace(**{**vars(options), "idle": 1.0})
    more = [run_child("deferred", again, n=first["n"]) for _ in range(options.repeat - 1)]
    return [first["waiting_s"], *(figures["waiting_s"] for figures in more)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="N=2,000, 50 files: a smoke run")
    parser.add_argument("--idle", type=float, help="idle window, seconds (60; --quick: 2)")
    parser.add_argument(
        "--repeat", type=int, default=3, help="re-opens in (c), armings in (a) (medians)"
    )
    parser.add_argument("--profile", action="store_true", help="cProfile the loop to stderr")
    parser.add_argument("--verbose", action="store_true", help="show the cases' logs")
    parser.add_argument("--case", choices=sorted(CASES), help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, default=2_000, help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, default=50, help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.idle is None:
        options.idle = 2.0 if options.quick else 60.0
    if options.case is None:
        run_all(options)
        return
    figures = anyio.run(CASES[options.case], options)
    print(RESULT + json.dumps(figures), flush=True)


if __name__ == "__main__":
    main()
