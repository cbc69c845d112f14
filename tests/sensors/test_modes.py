"""Sensor modes through the real engine: reschedule (a slot only while checking), poke (a slot
throughout, with a synchronous `poke()`), the sensor's timeout and soft_fail, and backoff.

The sensors here check a `GateTrigger` (tests/triggerkit.py) with its `poll()`: the test opens
the gate, and the next check sees it.
"""

from __future__ import annotations

import threading
from typing import Any

import anyio
import anyio.to_thread
import pytest
from anyio.streams.memory import MemoryObjectReceiveStream
from sensorkit import (
    SettingsFactory,
    WatchedClock,
    engine_for,
    instance,
    results_of,
    until_rescheduled,
)
from triggerkit import GateSensor, open_gate

from orchestrator import DAG, TaskContext
from orchestrator.authoring.references import ParamRef
from orchestrator.changes import Change, TaskChanged
from orchestrator.clock import FakeClock
from orchestrator.scheduling.engine import Engine
from orchestrator.state import RunState, TaskState
from sensors.base import BaseSensor

POKE = 30.0


def gate_dag(**options: Any) -> DAG:
    with DAG("gated") as pipeline:
        GateSensor(task_id="wait", gate="gate", **options)
    return pipeline


def drain(changes: MemoryObjectReceiveStream[Change]) -> list[Change]:
    """The changes announced so far."""
    taken = []
    while True:
        try:
            taken.append(changes.receive_nowait())
        except anyio.WouldBlock:
            return taken


async def next_check(engine: Engine, run_id: str, after: float | None) -> float:
    """Wait until the sensor is deferred to its next check (after `after`): that check's moment."""
    return await until_rescheduled(engine, run_id, "wait", after)


async def test_reschedule_takes_a_slot_only_to_check_and_keeps_one_try(
    make_settings: SettingsFactory,
) -> None:
    clock = FakeClock()
    start = clock.now()
    pipeline = gate_dag(mode="reschedule", poke_interval=POKE)
    async with (
        engine_for(make_settings(), pipeline, clock=clock) as engine,
        engine.subscribe() as changes,
    ):
        run_id = await engine.trigger("gated")
        moment = None
        for check in range(1, 4):  # three checks find the gate closed
            if check > 1:
                clock.advance(POKE)
            moment = await next_check(engine, run_id, moment)
            assert moment == start + check * POKE
            assert engine.scheduler.slots_used == 0  # between checks: no slot
        open_gate("gate", {"opened": "after three checks"})
        clock.advance(POKE)  # the fourth check finds the gate open
        record = await engine.wait(run_id)
        tries = await engine.store.list_tries(run_id, "wait")
        results = await results_of(engine, run_id)
        assert await engine.store.list_triggers() == []
        states = [change.state for change in drain(changes) if isinstance(change, TaskChanged)]

    assert record.state is RunState.SUCCESS
    assert results["wait"] == {"opened": "after three checks"}
    # On a slot for each of the four checks only; deferred (no slot) between them.
    assert states.count(TaskState.RUNNING) == 4
    assert states.count(TaskState.DEFERRED) == 3
    assert [(t.try_number, t.state) for t in tries] == [(1, TaskState.SUCCESS)]


async def test_a_rescheduling_sensor_goes_on_checking_after_a_restart(
    make_settings: SettingsFactory,
) -> None:
    clock = FakeClock()
    pipeline = gate_dag(mode="reschedule", poke_interval=POKE, timeout=1000)
    settings = make_settings()
    async with engine_for(settings, pipeline, clock=clock) as engine:
        run_id = await engine.trigger("gated")
        moment = await next_check(engine, run_id, None)
    open_gate("gate", "opened while down")
    clock.set(moment)  # the next check came due while the engine was down

    async with engine_for(settings, pipeline, clock=clock) as engine:
        record = await engine.wait(run_id)
        results = await results_of(engine, run_id)
        tries = await engine.store.list_tries(run_id, "wait")

    assert record.state is RunState.SUCCESS
    assert results["wait"] == "opened while down"
    assert [t.try_number for t in tries] == [1]


async def test_exponential_backoff_doubles_the_interval_between_checks(
    make_settings: SettingsFactory,
) -> None:
    clock = FakeClock()
    pipeline = gate_dag(
        mode="reschedule", poke_interval=10, exponential_backoff=True, max_poke_interval=60
    )
    intervals: list[float] = []
    async with engine_for(make_settings(), pipeline, clock=clock) as engine:
        run_id = await engine.trigger("gated")
        moment = None
        for _ in range(5):
            moment = await next_check(engine, run_id, moment)
            intervals.append(moment - clock.now())
            clock.set(moment)
        open_gate("gate", "open")
        record = await engine.wait(run_id)

    assert intervals == [10, 20, 40, 60, 60]  # doubled each check, up to max_poke_interval
    assert record.state is RunState.SUCCESS


@pytest.mark.parametrize(
    ("soft_fail", "state", "error"),
    [
        (False, TaskState.FAILED, "SensorTimeoutError: the sensor waited 100s"),
        (True, TaskState.SKIPPED, "the sensor waited 100s without its condition holding"),
    ],
)
async def test_a_rescheduling_sensor_times_out_or_is_skipped_with_soft_fail(
    make_settings: SettingsFactory, soft_fail: bool, state: TaskState, error: str
) -> None:
    clock = FakeClock()
    start = clock.now()
    pipeline = gate_dag(mode="reschedule", poke_interval=POKE, timeout=100, soft_fail=soft_fail)
    moments: list[float] = []
    async with engine_for(make_settings(), pipeline, clock=clock) as engine:
        run_id = await engine.trigger("gated")
        moment = None
        for _ in range(4):
            moment = await next_check(engine, run_id, moment)
            moments.append(moment - start)
            clock.set(moment)
        await engine.wait(run_id)
        sensor = await instance(engine, run_id, "wait")
        tries = await engine.store.list_tries(run_id, "wait")

    assert moments == [30, 60, 90, 100]  # the last wait is cut to the time left
    assert sensor is not None and sensor.state is state
    assert error in (sensor.error or "")
    assert len(tries) == 1


class CountingSensor(BaseSensor):
    """A synchronous `poke()`: true on its third call; the first call waits for the test."""

    def __init__(self, *, task_id: str, **options: Any) -> None:
        super().__init__(task_id=task_id, **options)
        self.calls = 0
        self.poking = threading.Event()
        self.go_on = threading.Event()

    def poke(self, context: TaskContext) -> Any:
        self.calls += 1
        if self.calls == 1:
            self.poking.set()
            self.go_on.wait(timeout=20)
        return {"calls": self.calls, "task": context.task_id} if self.calls == 3 else False


async def test_poke_mode_holds_its_slot_and_calls_poke_until_it_holds(
    make_settings: SettingsFactory,
) -> None:
    with DAG("poking") as pipeline:
        sensor = CountingSensor(task_id="wait", mode="poke", poke_interval=0.01)

    async with engine_for(make_settings(in_process=True), pipeline) as engine:
        run_id = await engine.trigger("poking")
        assert await anyio.to_thread.run_sync(sensor.poking.wait, 20)
        assert engine.scheduler.slots_used == 1  # poking holds the slot
        ti = await instance(engine, run_id, "wait")
        assert ti is not None and ti.state is TaskState.RUNNING
        sensor.go_on.set()
        record = await engine.wait(run_id)
        results = await results_of(engine, run_id)
        tries = await engine.store.list_tries(run_id, "wait")

    assert record.state is RunState.SUCCESS
    assert results["wait"] == {"calls": 3, "task": "wait"}
    assert sensor.calls == 3
    assert len(tries) == 1


async def test_poke_mode_with_a_trigger_checks_on_the_engine_clock(
    make_settings: SettingsFactory,
) -> None:
    clock = WatchedClock()
    pipeline = gate_dag(mode="poke", poke_interval=POKE)
    async with engine_for(make_settings(), pipeline, clock=clock) as engine:
        run_id = await engine.trigger("gated")
        await clock.until_sleepers(1)  # the first check found the gate closed; it sleeps
        ti = await instance(engine, run_id, "wait")
        assert ti is not None and ti.state is TaskState.RUNNING
        assert engine.scheduler.slots_used == 1  # ...holding its slot
        open_gate("gate", "seen on the next check")
        clock.advance(POKE)
        record = await engine.wait(run_id)
        results = await results_of(engine, run_id)

    assert record.state is RunState.SUCCESS
    assert results["wait"] == "seen on the next check"


def test_a_bad_mode_is_refused_with_the_choices() -> None:
    expected = "sensor 'bad': mode must be one of deferrable, reschedule, poke"
    with DAG("bad"), pytest.raises(ValueError, match=expected):
        GateSensor(task_id="bad", gate="g", mode="sometimes")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"poke_interval": 0}, "poke_interval must be a positive duration, got 0"),
        ({"timeout": -1}, "a duration cannot be negative"),
        ({"max_poke_interval": 0}, "max_poke_interval must be a positive duration"),
    ],
)
def test_bad_timing_options_are_refused(options: dict[str, Any], message: str) -> None:
    with DAG("bad"), pytest.raises(ValueError, match=message):
        GateSensor(task_id="bad", gate="g", **options)


def test_only_arguments_a_run_can_set_are_untrusted_and_plain_values_never_are() -> None:
    # Plain values skip the walk for references (arming 100,000 sensors): a list or dict is
    # still walked, so a reference inside one counts.
    with DAG("refs"):
        sensor = GateSensor(task_id="wait", gate="gate")
    sensor.fields = {"text": "x", "number": 3, "none": None, "nested": [1, ParamRef("p")]}
    sensor.fields["param"] = ParamRef("q")
    assert sensor._untrusted({"p": 1, "q": 2}) == {"nested", "param"}
    assert sensor._untrusted({}) == frozenset()
