"""FakeClock (time moved by the test) and SystemClock."""

from __future__ import annotations

from collections.abc import Callable

import anyio
import pytest

from orchestrator.clock import Clock, FakeClock, SystemClock


async def _wait_for_sleepers(clock: FakeClock, count: int) -> None:
    with anyio.fail_after(5):
        while clock.sleepers < count:
            await anyio.lowlevel.checkpoint()


async def test_advance_wakes_sleepers_in_deadline_order() -> None:
    clock = FakeClock(start=1000.0)
    woken: list[tuple[str, float]] = []

    async def sleeper(name: str, deadline: float) -> None:
        await clock.sleep_until(deadline)
        woken.append((name, clock.now()))

    async with anyio.create_task_group() as group:
        # Started in an order that is not the deadline order.
        group.start_soon(sleeper, "late", 1030.0)
        group.start_soon(sleeper, "early", 1010.0)
        group.start_soon(sleeper, "middle", 1020.0)
        await _wait_for_sleepers(clock, 3)

        clock.advance(15)  # only "early" is due
        await _wait_until(lambda: len(woken) == 1)
        assert woken == [("early", 1015.0)]
        assert clock.sleepers == 2

        clock.advance(100)  # both others are due: the earlier deadline first
        await _wait_until(lambda: len(woken) == 3)
    assert [name for name, _ in woken] == ["early", "middle", "late"]
    assert clock.sleepers == 0


async def _wait_until(condition: Callable[[], bool]) -> None:
    with anyio.fail_after(5):
        while not condition():
            await anyio.lowlevel.checkpoint()


async def test_set_jumps_and_wakes_due_sleepers() -> None:
    clock = FakeClock(start=0.0)
    done = anyio.Event()

    async def sleeper() -> None:
        await clock.sleep_until(50.0)
        done.set()

    async with anyio.create_task_group() as group:
        group.start_soon(sleeper)
        await _wait_for_sleepers(clock, 1)
        clock.set(49.0)
        await anyio.lowlevel.checkpoint()
        assert not done.is_set()
        clock.set(50.0)
        with anyio.fail_after(5):
            await done.wait()
    assert clock.now() == 50.0


async def test_a_deadline_already_passed_returns_without_sleeping() -> None:
    clock = FakeClock(start=100.0)
    with anyio.fail_after(5):
        await clock.sleep_until(100.0)
        await clock.sleep_until(3.0)
    assert clock.sleepers == 0


async def test_a_cancelled_sleeper_is_forgotten() -> None:
    clock = FakeClock(start=0.0)
    woken: list[str] = []
    scope = anyio.CancelScope()

    async def sleeper(name: str, deadline: float) -> None:
        await clock.sleep_until(deadline)
        woken.append(name)

    async def cancellable_sleeper() -> None:
        with scope:
            await sleeper("cancelled", 10.0)

    async with anyio.create_task_group() as group:
        group.start_soon(sleeper, "kept", 20.0)
        group.start_soon(cancellable_sleeper)
        await _wait_for_sleepers(clock, 2)
        scope.cancel()
        await _wait_until(lambda: clock.sleepers == 1)
        clock.advance(30)
    assert woken == ["kept"]
    assert clock.sleepers == 0


async def test_the_clock_cannot_go_backwards() -> None:
    clock = FakeClock(start=10.0)
    with pytest.raises(ValueError, match="cannot go backwards"):
        clock.advance(-1)
    with pytest.raises(ValueError, match=r"cannot go backwards \(from 10.0 to 9.0\)"):
        clock.set(9.0)
    assert clock.now() == 10.0
    clock.advance(0)  # standing still is fine
    assert clock.now() == 10.0


async def test_system_clock_is_the_wall_clock() -> None:
    clock: Clock = SystemClock()
    before = clock.now()
    with anyio.fail_after(5):
        await clock.sleep_until(before - 1)  # in the past: returns at once
    assert clock.now() >= before


async def test_fake_clock_satisfies_the_protocol() -> None:
    clock: Clock = FakeClock()
    assert clock.now() == 1_800_000_000.0
