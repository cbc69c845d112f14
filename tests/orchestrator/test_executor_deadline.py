"""A try without a timeout runs without a cancel scope; it is cancelled and ends as before."""

from __future__ import annotations

import anyio
import anyio.lowlevel
import pytest

from orchestrator.execution.executor import _deadline


async def test_no_timeout_catches_nothing_and_lets_an_outer_cancel_through() -> None:
    reached_after = False
    with anyio.move_on_after(0.01) as outer:
        with _deadline(None) as deadline:
            await anyio.sleep_forever()
        reached_after = True
    assert outer.cancelled_caught and not deadline.cancelled_caught and not reached_after
    with pytest.raises(ValueError), _deadline(None):
        raise ValueError("passes through")


async def test_a_timeout_is_still_anyios_move_on_after() -> None:
    with _deadline(0.01) as deadline:
        await anyio.sleep_forever()
    assert isinstance(deadline, anyio.CancelScope) and deadline.cancelled_caught
    with _deadline(5) as deadline:
        await anyio.lowlevel.checkpoint()
    assert not deadline.cancelled_caught
