"""The engine's timers: retry backoffs, deferral timeouts and schedule ticks, in one heap.

One task sleeps until the earliest timer and posts what came due to the engine's inbox; a new
earlier timer interrupts that sleep. So the engine never polls: with nothing due, nothing wakes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from orchestrator.clock import Clock, Deadlines
from orchestrator.scheduling.deferred import Timer


class TimerQueue:
    """Timers by due time; `run()` posts each one (`post(timer)`) once its moment has come."""

    def __init__(self, clock: Clock, post: Callable[[Timer], None]) -> None:
        self._post = post
        self._timers: Deadlines[Timer] = Deadlines(clock)

    def add(self, timers: Iterable[Timer]) -> None:
        """Set these timers; one earlier than all the others cuts the current sleep short."""
        add = self._timers.add  # bound once: arming 100,000 sensors sets as many timeouts
        for timer in timers:
            add(timer.due, timer)

    def pending(self) -> list[Timer]:
        """The timers not yet due, in no particular order (for tests and diagnostics)."""
        return self._timers.items()

    async def run(self) -> None:
        """Sleep until the earliest timer, post every timer due, and again, forever."""
        while True:
            for timer in await self._timers.next_due():
                self._post(timer)
