"""The machine a benchmark ran on, for the first line of its printout, and its verdicts.

The machine may be shared: every bench prints the load average with its figures (`machine()`
includes it, and the longer benches print it again at the end), and `verdict` refuses a PASS
when the load was above `QUIET_LOAD`: the figure then says to rerun on a quiet machine.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path


def machine() -> str:
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{platform.node()}: {model}, {os.cpu_count()} cores, {platform.system()} "
        f"{platform.release()}, Python {platform.python_version()}; "
        f"load average {load_average()}"
    )


#: Above this 1-minute load average the machine is shared: a figure may be the neighbours' cost.
QUIET_LOAD = 1.0


def load_average() -> str:
    """The machine may be shared: figures taken under load are slower than the code."""
    return " ".join(f"{load:.2f}" for load in os.getloadavg()) + f" on {os.cpu_count()} cores"


def verdict(ok: bool) -> str:
    """PASS or MISS; never PASS on a busy machine, where a figure proves nothing: rerun then."""
    load = os.getloadavg()[0]
    if ok and load > QUIET_LOAD:
        return f"RERUN (load {load:.2f} > {QUIET_LOAD:g}: no pass on a busy machine)"
    return "PASS" if ok else "MISS"
