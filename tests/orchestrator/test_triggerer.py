"""The triggerer's watchdog and statistics, with triggers that misbehave on purpose."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import anyio
import anyio.lowlevel
import triggerkit
from anyio.abc import TaskGroup
from triggerkit import BlockingTrigger, GateTrigger, open_gate, until_waiting

from helpers import bag_of
from orchestrator import DAG, task
from orchestrator.authoring.defer import Defer
from orchestrator.config import Settings
from orchestrator.scheduling.engine import Engine
from orchestrator.state import RunState
from orchestrator.waiting.triggerer import Fired, Triggerer, TriggerOutcome
from orchestrator.waiting.watchdog import LoopWatchdog
from triggers.base import TriggerRuntime

SettingsFactory = Callable[..., Settings]


async def test_the_watchdog_names_the_trigger_that_blocks_the_loop(
    make_settings: SettingsFactory,
) -> None:
    with DAG("blocking") as dag:

        @task
        def wait() -> Defer:
            return Defer(BlockingTrigger(seconds=1.0))

        wait()

    async with Engine.open(make_settings(), dagbag=bag_of(dag)) as engine:
        run_id = await engine.trigger("blocking")
        assert (await engine.wait(run_id)).state is RunState.SUCCESS  # it fired after the block
        stats = engine.triggerer.statistics()
    assert stats.blocked_by is not None
    assert stats.blocked_by.startswith("BlockingTrigger(seconds=1.0) for wait of run")
    assert stats.blocked_seconds >= 0.2  # at least the watchdog's threshold
    assert stats.fired == 1


async def test_disarming_closes_a_trigger_and_reports_nothing() -> None:
    reports: list[tuple[Any, TriggerOutcome]] = []
    async with anyio.create_task_group() as tg:
        triggerer = _reporting_to(reports, tg, capacity=10)
        triggerer.arm(("r", "a", -1), GateTrigger(name="disarm-a"))
        triggerer.arm(("r", "b", -1), GateTrigger(name="disarm-b"))
        triggerer.arm(("r", "c", -1), GateTrigger(name="disarm-c"))
        triggerer.disarm(("r", "c", -1))  # before it even started: it never runs
        await until_waiting("disarm-a")
        triggerer.disarm(("r", "a", -1))  # while it waits: its cleanup runs
        open_gate("disarm-b", "fired")
        with anyio.fail_after(10):
            while not reports or triggerer.statistics().running:
                await anyio.lowlevel.checkpoint()
        tg.cancel_scope.cancel()
    assert [key for key, _ in reports] == [("r", "b", -1)]  # the disarmed one never reports
    outcome = reports[0][1]
    assert isinstance(outcome, Fired) and outcome.event.payload == "fired"
    assert sorted(triggerkit.cleaned_up) == ["disarm-a", "disarm-b"]  # both were closed


async def test_the_watchdog_sleeps_while_the_loop_waits_in_its_selector() -> None:
    """An idle loop blocks nothing: the watchdog stops pinging it (no wake-ups while idle).

    That it still catches a block once the loop runs is the test above.
    """
    watchdog = LoopWatchdog()
    watchdog.start()
    try:
        # Meanwhile the loop waits for the worker thread: idle in its selector.
        parked = await anyio.to_thread.run_sync(_until_true, lambda: watchdog.idle)
    finally:
        watchdog.stop()
    assert parked, "the watchdog kept pinging an idle loop"
    assert watchdog.blocks == 0


def _until_true(condition: Callable[[], bool]) -> bool:
    """In a worker thread: True once `condition` holds, False after 10 s."""
    deadline = time.monotonic() + 10
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.001)  # a worker thread polling a flag another thread sets
    return True


async def test_over_capacity_a_key_armed_again_or_disarmed_leaves_the_queue_once() -> None:
    reports: list[tuple[Any, TriggerOutcome]] = []
    async with anyio.create_task_group() as tg:
        triggerer = _reporting_to(reports, tg, capacity=1)
        triggerer.arm(("r", "a", -1), GateTrigger(name="queue-a"))
        triggerer.arm(("r", "b", -1), GateTrigger(name="queue-b"))
        triggerer.arm(("r", "c", -1), GateTrigger(name="queue-c-old"))
        triggerer.arm(("r", "c", -1), GateTrigger(name="queue-c"))  # replaces its queued one
        triggerer.disarm(("r", "b", -1))
        assert triggerer.statistics().waiting == 1
        await until_waiting("queue-a")
        open_gate("queue-a", "a")
        await until_waiting("queue-c")
        open_gate("queue-c", "c")
        with anyio.fail_after(10):
            while len(reports) < 2 or triggerer.statistics().running:
                await anyio.lowlevel.checkpoint()
        tg.cancel_scope.cancel()
    assert [key for key, _ in reports] == [("r", "a", -1), ("r", "c", -1)]
    assert sorted(triggerkit.cleaned_up) == ["queue-a", "queue-c"]  # b and c's first never ran


def _reporting_to(
    reports: list[tuple[Any, TriggerOutcome]], tg: TaskGroup, *, capacity: int
) -> Triggerer:
    """A triggerer hosting `capacity` triggers at once, each outcome appended to `reports`."""
    return Triggerer(
        tg, capacity=capacity, report=lambda k, o: reports.append((k, o)), runtime=TriggerRuntime()
    )
