"""Crash points: named places where a crash test makes the daemon kill itself with SIGKILL.

The crash tests prove contract 1 and 2 (at-least-once execution, exactly-once recording, one
event, one run) by killing the daemon at the worst moments: between an event's arrival and
its commit, between a task's success and its commit, and so on. A timed `kill -9` from outside
would hit those moments only by luck, so the daemon kills itself where a test asks:

```
ORCHESTRATOR_CRASH_AT=task_succeeded      the first time the point is reached
ORCHESTRATOR_CRASH_AT=task_succeeded:3    the third time
```

`crashpoint(name)` is called at each point in `CRASH_POINTS`. Unset (always, in production),
it costs a dictionary lookup in an empty dictionary. The variable is read once, on the first
call; `reset()` forgets what was read, for tests that change it. The daemon calls
`check_crash_setting()` at start, so a misspelt point fails loudly instead of silently
turning a crash test into a test of nothing.
"""

from __future__ import annotations

import os
import signal
import sys
from contextlib import suppress

from orchestrator.errors import ConfigError

#: The environment variable a crash test sets: `name` or `name:N`.
CRASH_AT_VARIABLE = "ORCHESTRATOR_CRASH_AT"

#: Every crash point the daemon has: name -> the moment it stands for.
CRASH_POINTS: dict[str, str] = {
    "event_received": "an event reached the engine, before it is committed",
    "run_committed": "an event's run (and event row) committed, before it is scheduled",
    "task_succeeded": "a worker reported success, before the step commits it",
    "success_committed": "a success committed, before downstream tasks are dispatched",
    "task_dispatched": "a task was handed to a worker, before it finishes",
    "schedule_tick": "a schedule tick's run committed",
    "shutdown_grace": "during a SIGTERM grace period",
    "webhook_committed": "a webhook delivery's run committed, before the 2xx is sent",
    "alert_committed": "a state change and its alerts committed, before the alerts are sent",
}

# None until the variable is read; then the armed point -> how many more passes until the
# crash (empty when no crash is asked for, or the setting is bad: see `check_crash_setting`).
_countdown: dict[str, int] | None = None


def crashpoint(name: str) -> None:
    """Die here by SIGKILL if ORCHESTRATOR_CRASH_AT names this point and its turn has come."""
    countdown = _countdown if _countdown is not None else _load()
    if name in countdown:
        countdown[name] -= 1
        if countdown[name] == 0:
            _die(name)


def crash_armed() -> bool:
    """True if a crash point is asked for: callers skip working out which points they pass."""
    return bool(_countdown if _countdown is not None else _load())


def check_crash_setting() -> None:
    """Raise `ConfigError` if ORCHESTRATOR_CRASH_AT is set to something that cannot crash."""
    parse_crash_setting(os.environ.get(CRASH_AT_VARIABLE, ""))


def parse_crash_setting(value: str) -> tuple[str, int] | None:
    """`name` or `name:N` as (name, N); None for an empty value; `ConfigError` if invalid."""
    if not value.strip():
        return None
    name, separator, count = value.strip().partition(":")
    if name not in CRASH_POINTS:
        known = ", ".join(sorted(CRASH_POINTS))
        raise ConfigError(
            f"{CRASH_AT_VARIABLE}={value!r} names no crash point; the crash points are: {known}"
        )
    if not separator:
        return name, 1
    if not count.isdecimal() or int(count) < 1:
        raise ConfigError(
            f"{CRASH_AT_VARIABLE}={value!r}: after the colon comes how many times the point is "
            f"passed before the crash, a whole number from 1 (as in {name}:2), not {count!r}"
        )
    return name, int(count)


def reset() -> None:
    """Forget the setting read so far: the next crash point reads the variable again."""
    global _countdown
    _countdown = None


def _load() -> dict[str, int]:
    global _countdown
    try:
        setting = parse_crash_setting(os.environ.get(CRASH_AT_VARIABLE, ""))
    except ConfigError:
        setting = None  # reported by `check_crash_setting`, which the daemon calls at start
    _countdown = {} if setting is None else {setting[0]: setting[1]}
    return _countdown


def _die(name: str) -> None:
    """SIGKILL this process, as a power cut would: no cleanup, no `finally`, no atexit."""
    # Flush what the process printed so far, so the test can show where it got to; this
    # writes no state, so the crash is as abrupt as a real one where it matters.
    for stream in (sys.stdout, sys.stderr):
        with suppress(OSError, ValueError, AttributeError):
            stream.flush()
    with suppress(OSError):
        os.write(2, f"crash point {name!r} reached: killing this process (SIGKILL)\n".encode())
    os.kill(os.getpid(), signal.SIGKILL)
