"""What start-up made is left out of the cycle collector's scans once the daemon is ready."""

from __future__ import annotations

import gc

from orchestrator.daemon.lifecycle import _freeze_startup_objects


def test_objects_made_before_ready_are_frozen_and_later_ones_are_not() -> None:
    before = ["made at start-up"]  # a list: always tracked by the collector
    try:
        _freeze_startup_objects()
        after = ["made while serving"]
        scanned = {id(item) for item in gc.get_objects()}
        assert id(before) not in scanned  # a full collection no longer walks it
        assert id(after) in scanned
    finally:
        gc.unfreeze()  # the rest of the test session collects as before
