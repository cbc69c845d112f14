"""The collector is kept off bulk-armed sensors, and let back once half of them have ended."""

from __future__ import annotations

import gc

from orchestrator.waiting.long_lived import BULK, LongLived, collector_paused


def test_a_bulk_arming_freezes_and_half_of_it_ending_unfreezes() -> None:
    gc.unfreeze()  # whatever an earlier test left frozen
    long_lived = LongLived()
    try:
        long_lived.armed(BULK - 1, running=BULK - 1)
        assert gc.get_freeze_count() == 0  # a few triggers: the collector may walk them
        long_lived.armed(BULK, running=2 * BULK)
        assert gc.get_freeze_count() > 0
        long_lived.ended(running=BULK)  # half of them: not yet
        assert gc.get_freeze_count() > 0
        long_lived.ended(running=BULK - 1)
        assert gc.get_freeze_count() == 0  # their remains' cycles can be collected again
    finally:
        gc.unfreeze()


def test_the_collector_is_paused_and_then_as_it_was() -> None:
    assert gc.isenabled()
    with collector_paused():
        assert not gc.isenabled()
    assert gc.isenabled()
    gc.disable()
    try:
        with collector_paused():
            pass
        assert not gc.isenabled()  # it was off before: it stays off
    finally:
        gc.enable()
