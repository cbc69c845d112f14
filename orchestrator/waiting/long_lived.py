"""Keeping the garbage collector off the waiting sensors, and letting it back when they end.

A hundred thousand waiting sensors are millions of objects (their runs, task instances,
triggers, records) that live for hours. CPython's collector walks every tracked object in
each full pass, and it makes a full pass whenever the heap has grown by a quarter: arming
100,000 sensors made eleven of them, 8.5 s of the 29 s it took. After arming a bulk of
triggers, `gc.freeze()` moves everything alive to a generation the collector never walks
(a constant-time splice), so later passes see only what is new.

What is frozen is not collected even once it is garbage, unless plain reference counting
frees it (most objects; not cycles, such as a run and its task instances). So once half the
triggers alive at the last freeze have ended, `gc.unfreeze()` hands everything back to the
collector, and the next full pass reclaims those cycles: memory stays bounded by the
sensors that wait, at the cost of one full pass per halving.

Recovery at start builds them all in one go, and the collector would make a full pass each
time the heap grew by a quarter while it does (eleven for 100,000 sensors, 2 s of 8):
`collector_paused()` holds it off meanwhile, and the arming that follows freezes the lot.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

#: Arming at least this many triggers at once freezes what is alive.
BULK = 1_000


class LongLived:
    """Freezes after bulk arming, unfreezes once half of what was armed then has ended."""

    def __init__(self) -> None:
        self._frozen_with = 0  # triggers running at the last freeze; 0: nothing frozen by us

    def armed(self, count: int, running: int) -> None:
        """`count` triggers were just armed; `running` are hosted now."""
        if count >= BULK:
            gc.collect(1)  # the young garbage first (cheap): what is frozen should be alive
            gc.freeze()
            self._frozen_with = running

    def ended(self, running: int) -> None:
        """A trigger ended; `running` are hosted now."""
        if self._frozen_with and running < self._frozen_with // 2:
            gc.unfreeze()
            self._frozen_with = 0


@contextmanager
def collector_paused() -> Iterator[None]:
    """No collection while this runs (reference counting still frees what is dropped)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
