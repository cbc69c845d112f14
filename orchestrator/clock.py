"""Time, injected: `SystemClock` in production, `FakeClock` in tests.

Everything in the engine that waits for a moment (a retry backoff, a schedule, a time
trigger) asks the clock, so a test moves time with `clock.advance(...)` instead of sleeping.
Times are seconds since the epoch (UTC) because they are persisted and compared across restarts.
"""

from __future__ import annotations

import heapq
import itertools
import time
from collections.abc import Callable
from typing import Generic, Protocol, TypeVar

import anyio

Item = TypeVar("Item")


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

    def deadlines(self) -> list[float]:
        """The pending waits' deadlines, soonest first (a test can wait for a given one)."""
        return sorted(deadline for deadline, _, _ in self._sleepers)


class Deadlines(Generic[Item]):
    """Items due at moments of a clock, in one heap: one task serves them all with `next_due()`.

    Thousands of timers (retry backoffs, time triggers) then cost a heap entry each, not a
    sleeping task each. An item due earlier than all the others cuts the current sleep short,
    and `interrupt()` makes `next_due()` return at once (its owner has something else to do).
    Items are never removed one by one: the owner skips the ones it no longer wants when they
    come due, and drops them in bulk with `keep` when they pile up.
    """

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._heap: list[tuple[float, int, Item]] = []
        self._order = itertools.count()  # ties keep their order, and items are never compared
        self._sleep: anyio.CancelScope | None = None
        self._interrupted = False

    def __len__(self) -> int:
        return len(self._heap)

    def add(self, due: float, item: Item) -> None:
        if self._sleep is not None and (not self._heap or due < self._heap[0][0]):
            self._sleep.cancel()
        heapq.heappush(self._heap, (due, next(self._order), item))

    def items(self) -> list[Item]:
        """The items not yet due, in no particular order."""
        return [item for _, _, item in self._heap]

    def keep(self, wanted: Callable[[Item], bool]) -> None:
        """Drop the items that are not `wanted` any more."""
        self._heap = [entry for entry in self._heap if wanted(entry[2])]
        heapq.heapify(self._heap)

    def interrupt(self) -> None:
        self._interrupted = True
        if self._sleep is not None:
            self._sleep.cancel()

    async def next_due(self) -> list[Item]:
        """Sleep until the earliest item (without any: until one is added); every item due."""
        with anyio.CancelScope() as self._sleep:
            if not self._interrupted:
                if self._heap:
                    await self._clock.sleep_until(self._heap[0][0])
                else:
                    await anyio.sleep_forever()
        self._sleep, self._interrupted = None, False
        now, due = self._clock.now(), []
        while self._heap and self._heap[0][0] <= now:
            due.append(heapq.heappop(self._heap)[2])
        return due
