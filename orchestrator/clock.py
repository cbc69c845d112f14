"""Time, injected: `SystemClock` in production, `FakeClock` in tests.

Everything in the engine that waits for a moment (a retry backoff, a schedule, a time
trigger) asks the clock, so a test moves time with `clock.advance(...)` instead of sleeping.
Times are seconds since the epoch (UTC) because they are persisted and compared across restarts.
"""

from __future__ import annotations

import heapq
import itertools
import time
from typing import Protocol

import anyio


class Clock(Protocol):
    """What the engine needs from time."""

    def now(self) -> float:
        """Seconds since the epoch."""
        ...

    async def sleep_until(self, deadline: float) -> None:
        """Return once `now() >= deadline`; cancellable."""
        ...


class SystemClock:
    """The wall clock. Sleeps are re-checked so a clock step never wakes a timer early."""

    def now(self) -> float:
        return time.time()

    async def sleep_until(self, deadline: float) -> None:
        # Re-checked in a loop because the wall clock can be stepped while we sleep.
        while (remaining := deadline - time.time()) > 0:  # noqa: ASYNC110
            await anyio.sleep(remaining)


class FakeClock:
    """A clock that moves only when a test calls `advance` or `set`."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self._now = start
        self._sleepers: list[tuple[float, int, anyio.Event]] = []
        self._order = itertools.count()

    def now(self) -> float:
        return self._now

    async def sleep_until(self, deadline: float) -> None:
        if deadline <= self._now:
            await anyio.lowlevel.checkpoint()
            return
        event = anyio.Event()
        entry = (deadline, next(self._order), event)
        heapq.heappush(self._sleepers, entry)
        try:
            await event.wait()
        finally:
            if not event.is_set():  # cancelled: forget the sleeper so `sleepers` stays true
                self._sleepers.remove(entry)
                heapq.heapify(self._sleepers)

    def advance(self, seconds: float) -> None:
        """Move time forward and wake every sleeper whose deadline has come."""
        if seconds < 0:
            raise ValueError(f"a clock cannot go backwards (advance by {seconds})")
        self.set(self._now + seconds)

    def set(self, now: float) -> None:
        """Jump to `now` and wake every sleeper whose deadline has come."""
        if now < self._now:
            # Sleepers already woken would have woken too early: refuse, as `advance` does.
            raise ValueError(f"a clock cannot go backwards (from {self._now} to {now})")
        self._now = now
        while self._sleepers and self._sleepers[0][0] <= now:
            heapq.heappop(self._sleepers)[2].set()

    @property
    def sleepers(self) -> int:
        """How many waits are pending (a test can wait until the engine is asleep)."""
        return len(self._sleepers)
