"""The engine's timers: retry backoffs, deferral timeouts and schedule ticks, in one heap.

One task sleeps until the earliest timer and posts what came due to the engine's inbox; a new
earlier timer interrupts that sleep. So the engine never polls: with nothing due, nothing wakes.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable, Iterable

import anyio

from orchestrator.clock import Clock
from orchestrator.scheduling.deferred import Timer


class TimerQueue:
    """Timers by due time; `run()` posts each one (`post(timer)`) once its moment has come."""

    def __init__(self, clock: Clock, post: Callable[[Timer], None]) -> None:
        self._clock = clock
        self._post = post
        self._heap: list[tuple[float, int, Timer]] = []
        self._order = itertools.count()  # ties keep their order, and Timers are never compared
        self._added = anyio.Event()
        self._sleep: anyio.CancelScope | None = None

    def add(self, timers: Iterable[Timer]) -> None:
        """Set these timers; one earlier than all the others cuts the current sleep short."""
        added = False
        for timer in timers:
            earlier = not self._heap or timer.due < self._heap[0][0]
            heapq.heappush(self._heap, (timer.due, next(self._order), timer))
            if earlier and self._sleep is not None:
                self._sleep.cancel()
            added = True
        if added:
            self._added.set()

    def pending(self) -> list[Timer]:
        """The timers not yet due, in no particular order (for tests and diagnostics)."""
        return [timer for _, _, timer in self._heap]

    async def run(self) -> None:
        """Sleep until the earliest timer, post every timer due, and again, forever."""
        while True:
            if not self._heap:
                await self._added.wait()
                self._added = anyio.Event()
                continue
            with anyio.CancelScope() as scope:
                self._sleep = scope
                await self._clock.sleep_until(self._heap[0][0])
            self._sleep = None
            now = self._clock.now()
            while self._heap and self._heap[0][0] <= now:
                self._post(heapq.heappop(self._heap)[2])
