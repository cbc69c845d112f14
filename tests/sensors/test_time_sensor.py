"""DateTimeSensor and TimeDeltaSensor through the real engine, on a FakeClock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import anyio.lowlevel
import pytest
from sensorkit import (
    SettingsFactory,
    WatchedClock,
    engine_for,
    instance,
    results_of,
    states_of,
    trigger_of,
    until,
    until_rescheduled,
    until_state,
)

from orchestrator import DAG, task
from orchestrator.clock import FakeClock
from orchestrator.errors import DagError
from orchestrator.state import RunState, TaskState
from sensors import DateTimeSensor, TimeDeltaSensor
from sensors.base import BaseSensor

HOUR = 3600.0


def waiting_dag(make_sensor: type[BaseSensor], **arguments: Any) -> DAG:
    """The sensor, then a task that reports the event the sensor finished with."""
    with DAG("at_a_moment") as pipeline:
        moment = make_sensor(task_id="wait", **arguments)

        @task
        def after(event: dict[str, Any]) -> str:
            return f"ran after {event['moment_iso']}"

        after(moment.output)
    return pipeline


async def not_before_then_at_the_moment(
    clock: WatchedClock, settings: Any, pipeline: DAG, moment: float
) -> dict[str, Any]:
    """Run `pipeline`: nothing moves a second before `moment`; at `moment` the run ends."""
    async with engine_for(settings, pipeline, clock=clock) as engine:
        run_id = await engine.trigger("at_a_moment")
        await until_state(engine, run_id, "wait", TaskState.DEFERRED)
        row = await trigger_of(engine, run_id, "wait")
        assert row is not None and row.kwargs == {"moment": moment}
        await clock.until_sleepers(2)  # the time trigger and the sensor's timeout timer
        clock.set(moment - 1)
        await anyio.lowlevel.checkpoint()
        assert clock.sleepers == 2  # a second early: nothing woke
        states = await states_of(engine, run_id)
        assert states == {"wait": TaskState.DEFERRED, "after": TaskState.NONE}
        assert engine.scheduler.slots_used == 0
        clock.set(moment)
        record = await engine.wait(run_id)
        results = await results_of(engine, run_id)
    assert record.state is RunState.SUCCESS
    return results


async def test_a_datetime_sensor_waits_for_its_moment_and_then_runs_downstream(
    make_settings: SettingsFactory,
) -> None:
    clock = WatchedClock()
    target = datetime.fromtimestamp(clock.now() + HOUR, tz=UTC)
    pipeline = waiting_dag(DateTimeSensor, target_time=target)

    results = await not_before_then_at_the_moment(
        clock, make_settings(), pipeline, target.timestamp()
    )

    assert results["wait"]["moment"] == target.timestamp()
    assert results["wait"]["fired_at"] == target.timestamp()
    assert results["after"] == f"ran after {target.isoformat()}"


async def test_a_datetime_sensor_takes_an_iso_string_with_its_zone(
    make_settings: SettingsFactory,
) -> None:
    clock = WatchedClock()
    target = datetime.fromtimestamp(clock.now() + HOUR, tz=UTC)
    in_paris = target.astimezone(ZoneInfo("Europe/Paris")).isoformat()
    pipeline = waiting_dag(DateTimeSensor, target_time=in_paris)

    results = await not_before_then_at_the_moment(
        clock, make_settings(), pipeline, target.timestamp()
    )

    assert results["after"] == f"ran after {target.isoformat()}"


async def test_a_timedelta_sensor_waits_its_delta_from_when_it_starts(
    make_settings: SettingsFactory,
) -> None:
    clock = WatchedClock()
    start = clock.now()
    pipeline = waiting_dag(TimeDeltaSensor, delta=timedelta(minutes=30))

    results = await not_before_then_at_the_moment(clock, make_settings(), pipeline, start + 30 * 60)

    assert results["wait"]["moment"] == start + 30 * 60


async def test_a_timedelta_sensor_of_a_scheduled_run_counts_from_the_logical_date(
    make_settings: SettingsFactory,
) -> None:
    clock = FakeClock()
    logical_date = clock.now() - HOUR  # a run for an hour ago, as a catch-up would make
    pipeline = waiting_dag(TimeDeltaSensor, delta=timedelta(minutes=30))

    async with engine_for(make_settings(), pipeline, clock=clock) as engine:
        run_id = await engine.trigger(
            "at_a_moment", run_type="scheduled", logical_date=logical_date
        )
        record = await engine.wait(run_id)  # its moment has passed: no clock move needed
        results = await results_of(engine, run_id)

    assert record.state is RunState.SUCCESS
    assert results["wait"]["moment"] == logical_date + 30 * 60


async def test_a_timedelta_sensor_of_a_scheduled_run_counts_from_the_interval_end(
    make_settings: SettingsFactory,
) -> None:
    """Airflow's rule: `delta` after the data interval's end, when the interval is complete."""
    clock = FakeClock()
    end = (clock.now() // HOUR - 1) * HOUR  # the last whole hour but one: its moment has passed
    with DAG("hourly", schedule="@hourly", start_date=end - 24 * HOUR) as pipeline:
        TimeDeltaSensor(task_id="wait", delta=timedelta(minutes=30))

    async with engine_for(make_settings(), pipeline, clock=clock) as engine:
        [run_id], _ = await engine.backfill("hourly", end - HOUR, end - 1)
        record = await engine.wait(run_id)
        results = await results_of(engine, run_id)

    assert record.state is RunState.SUCCESS
    assert results["wait"]["moment"] == end + 30 * 60


async def test_a_moment_that_passed_while_the_engine_was_down_fires_on_start(
    make_settings: SettingsFactory,
) -> None:
    clock = FakeClock()
    target = datetime.fromtimestamp(clock.now() + HOUR, tz=UTC)
    pipeline = waiting_dag(DateTimeSensor, target_time=target)
    settings = make_settings()

    async with engine_for(settings, pipeline, clock=clock) as engine:
        run_id = await engine.trigger("at_a_moment")
        await until_state(engine, run_id, "wait", TaskState.DEFERRED)
    clock.advance(2 * HOUR)
    async with engine_for(settings, pipeline, clock=clock) as engine:
        record = await engine.wait(run_id)
        results = await results_of(engine, run_id)

    assert record.state is RunState.SUCCESS
    assert results["wait"]["fired_at"] == clock.now()


async def test_a_rescheduling_timedelta_sensor_fires_delta_after_it_started(
    make_settings: SettingsFactory,
) -> None:
    clock = FakeClock()
    start = clock.now()
    with DAG("later") as pipeline:
        TimeDeltaSensor(task_id="wait", delta=60, mode="reschedule", poke_interval=30)

    async with engine_for(make_settings(), pipeline, clock=clock) as engine:
        run_id = await engine.trigger("later")
        moment = await until_rescheduled(engine, run_id, "wait")
        clock.set(moment)
        moment = await until_rescheduled(engine, run_id, "wait", moment)
        clock.set(moment)  # start + 60: the delta has passed, so this check should succeed

        async def settled() -> bool:
            ti = await instance(engine, run_id, "wait")
            row = await trigger_of(engine, run_id, "wait")
            return ti is not None and (
                ti.state.finished or (row is not None and row.kwargs["moment"] > moment)
            )

        await until(engine, settled)
        ti = await instance(engine, run_id, "wait")

    assert clock.now() == start + 60
    assert ti is not None and ti.state is TaskState.SUCCESS


@pytest.mark.parametrize(
    ("target_time", "message"),
    [
        (datetime(2026, 11, 22, 3, 0), "has no timezone"),
        ("2026-11-22T03:00:00", "'2026-11-22T03:00:00' has no timezone"),
        ("tomorrow at three", "'tomorrow at three' is not an ISO 8601 date and time"),
        (float("nan"), "must be a finite number of seconds"),
    ],
)
def test_a_moment_without_a_timezone_or_unreadable_is_a_dag_error(
    target_time: Any, message: str
) -> None:
    with DAG("bad"), pytest.raises(DagError, match=message) as raised:
        DateTimeSensor(task_id="bad", target_time=target_time)

    error = raised.value
    assert error.file == __file__ and error.line is not None
    assert "DateTimeSensor(" in Path(__file__).read_text().splitlines()[error.line - 1]
    assert str(error).startswith(f"{__file__}:{error.line}: sensor 'bad': ")


def test_a_timedelta_sensor_refuses_a_delta_that_is_not_a_duration() -> None:
    with DAG("bad"), pytest.raises(TypeError, match="a duration must be a number of seconds"):
        TimeDeltaSensor(task_id="bad", delta="30 minutes")  # type: ignore[arg-type]
