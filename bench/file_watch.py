"""The shared file watcher: idle CPU and event latency, sleeping on the doorbell or stepping.

    .venv/bin/python bench/file_watch.py [--idle SECONDS] [--files N] [--directories N]

Side by side, in one process and so under the same load: the notifier thread asleep on its
inotify doorbell (`triggers.doorbell`, the default on Linux) and the same thread stepping every
millisecond (the fallback elsewhere, and what ran before). For each: the CPU of the whole
process over `--idle` seconds with `--directories` watched and nothing happening, then the
latency from `os.replace` of a file into a watched directory to its batch in the subscriber.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import anyio
from machine import load_average, machine, verdict

import triggers.notifier
from triggers.doorbell import Doorbell, open_doorbell
from triggers.watch import Subscription, watch_directory

IDLE_TARGET_PCT = 0.15
LATENCY_TARGET_MS = 5.0


def stepping(*, recursive: bool, polling: bool) -> Doorbell:
    return Doorbell()  # never sleeps: a look every millisecond


async def measure(mode: str, root: Path, options: argparse.Namespace) -> dict[str, Any]:
    triggers.notifier.open_doorbell = open_doorbell if mode == "doorbell" else stepping  # type: ignore[attr-defined]
    directories = [root / mode / str(index) for index in range(options.directories)]
    for directory in directories:
        directory.mkdir(parents=True)
    async with AsyncExitStack() as stack:
        subscriptions = [
            await stack.enter_async_context(watch_directory(str(directory)))
            for directory in directories
        ]
        await anyio.sleep(0.2)  # the thread settles into its idle wait
        cpu, wall = time.process_time(), time.perf_counter()
        await anyio.sleep(options.idle)
        idle_pct = 100 * (time.process_time() - cpu) / (time.perf_counter() - wall)
        latencies = [
            await land_one(directories[0], subscriptions[0], index)
            for index in range(options.files)
        ]
    return {"idle_pct": idle_pct, "latency_ms": latencies}


async def land_one(directory: Path, subscription: Subscription, index: int) -> float:
    staging = directory.parent / f"staging-{directory.name}-{index}"
    staging.write_text("x")
    await anyio.sleep(0.02)  # spaced out: each landing starts from an idle thread
    began = time.perf_counter()
    staging.replace(directory / f"{index}.csv")
    while True:
        batch = await subscription.receive()
        if f"{index}.csv" in batch.files:
            return 1000 * (time.perf_counter() - began)


async def main_async(options: argparse.Namespace) -> None:
    print(f"machine: {machine()}")
    print(f"command: {' '.join([Path(sys.executable).name, *sys.argv])}")
    print(f"load average at start: {load_average()}")
    print(
        f"{options.directories} watched directories, {options.idle:g} s idle, "
        f"then {options.files} files landed one at a time"
    )
    with tempfile.TemporaryDirectory() as temporary:
        results = {mode: await measure(mode, Path(temporary), options) for mode in MODES}
    print(f"  {'':<34}{'doorbell':>14}{'1 ms step':>14}   target (doorbell)")
    idle = [results[mode]["idle_pct"] for mode in MODES]
    idle_ok = idle[0] < IDLE_TARGET_PCT
    print(
        f"  {'idle CPU, % of one core':<34}{idle[0]:>12.3f} %{idle[1]:>12.3f} %"
        f"   < {IDLE_TARGET_PCT} %: {verdict(idle_ok)}"
    )
    for label, fraction in (("p50", 0.5), ("p99", 0.99)):
        cells = [quantile(results[mode]["latency_ms"], fraction) for mode in MODES]
        target = ""
        if label == "p50":
            target = f"   <= {LATENCY_TARGET_MS:g} ms: {verdict(cells[0] <= LATENCY_TARGET_MS)}"
        figures = f"{cells[0]:>11.2f} ms{cells[1]:>11.2f} ms"
        print(f"  {'replace -> batch, ' + label:<34}{figures}{target}")
    print(f"load average at end: {load_average()}")


MODES = ("doorbell", "stepping")


def quantile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--idle", type=float, default=20.0, help="idle seconds measured")
    parser.add_argument("--files", type=int, default=200, help="files landed per mode")
    parser.add_argument("--directories", type=int, default=100, help="watched directories")
    options = parser.parse_args()
    anyio.run(main_async, options, backend="asyncio")


if __name__ == "__main__":
    main()
