"""Schedules end to end: the engine ticks on a FakeClock set to a fixed date.

Downtime is the clock moved while no engine is open on the state directory; a restart is a
new engine on the same directory. Logical dates are compared as ISO text, which reads better
in a failing assertion than epoch seconds.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from startkit import (
    NapClock,
    clock_at,
    iso,
    runs_of,
    settle,
    starting_engine,
    until_runs,
)

from helpers import bag_of
from orchestrator import DAG, TaskContext, task
from orchestrator.changes import RunChanged
from orchestrator.config import Settings
from orchestrator.scheduling.engine import Engine
from orchestrator.state import RunState
from orchestrator.store.records import RunRecord

SettingsFactory = Callable[..., Settings]
HOUR = 3600.0
DAY = 86400.0


def scheduled_dag(dag_id: str, **options: Any) -> DAG:
    """A scheduled DAG whose task returns the data interval it covers."""
    with DAG(dag_id, **options) as dag:

        @task
        def cover(context: TaskContext) -> Any:
            return [context.logical_date, context.data_interval_end]

        cover()
    return dag


def logical_dates(runs: list[RunRecord], zone: str = "UTC") -> list[str]:
    return sorted(iso(run.logical_date, zone) for run in runs)


def utc(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


async def test_no_catchup_after_five_hours_down_runs_only_the_latest_interval(
    make_settings: SettingsFactory,
) -> None:
    clock = clock_at("2026-03-10T12:30:00")
    dag = scheduled_dag("hourly", schedule="@hourly", catchup=False)
    settings = make_settings()
    async with starting_engine(settings, dag, clock=clock) as engine:
        [first] = await until_runs(engine, "hourly", 1)
    clock.advance(5 * HOUR)  # down from 12:30 to 17:30
    async with starting_engine(settings, dag, clock=clock) as engine:
        runs = await until_runs(engine, "hourly", 2)
        await settle(engine)
        runs = await runs_of(engine, "hourly")
        results = await engine.store.get_results(runs[-1].run_id)
    assert first.run_type == "scheduled"
    assert logical_dates(runs) == ["2026-03-10T11:00:00+00:00", "2026-03-10T16:00:00+00:00"]
    latest = next(run for run in runs if run.logical_date == utc("2026-03-10T16:00:00"))
    assert latest.data_interval_end == utc("2026-03-10T17:00:00")
    assert latest.dedup_key == "interval:2026-03-10T16:00:00+00:00"
    # The task saw the interval it covers.
    assert json.loads(results[("cover", -1)]) == [latest.logical_date, latest.data_interval_end]


async def test_catchup_creates_runs_lazily_within_max_active_runs_and_runs_every_interval(
    make_settings: SettingsFactory,
) -> None:
    clock = clock_at("2026-03-10T12:30:00")
    dag = scheduled_dag(
        "daily",
        schedule="@daily",
        start_date="2026-02-28",
        catchup=True,
        max_active_runs=2,
    )
    unfinished_peak = 0
    async with starting_engine(make_settings(), dag, clock=clock) as engine:
        async with engine.subscribe() as changes:
            ended = 0
            async for change in changes:
                if isinstance(change, RunChanged) and change.dag_id == "daily":
                    unfinished = [r for r in await runs_of(engine, "daily") if not r.state.finished]
                    unfinished_peak = max(unfinished_peak, len(unfinished))
                    ended += change.state.finished
                    if ended == 10:
                        break
        await settle(engine)
        runs = await runs_of(engine, "daily")
    assert unfinished_peak <= 2
    assert len(runs) == 10
    assert {run.state for run in runs} == {RunState.SUCCESS}
    starts = sorted(run.logical_date or 0.0 for run in runs)
    assert iso(starts[0]) == "2026-02-28T00:00:00+00:00"
    assert iso(starts[-1]) == "2026-03-09T00:00:00+00:00"
    assert [later - earlier for earlier, later in itertools.pairwise(starts)] == [DAY] * 9


async def test_a_tick_that_comes_while_running_starts_a_run(
    make_settings: SettingsFactory,
) -> None:
    clock = clock_at("2026-03-10T12:30:00")
    dag = scheduled_dag("hourly", schedule="@hourly")
    async with starting_engine(make_settings(), dag, clock=clock) as engine:
        await until_runs(engine, "hourly", 1)
        clock.set(utc("2026-03-10T12:59:59"))
        await settle(engine)
        assert len(await runs_of(engine, "hourly")) == 1
        clock.set(utc("2026-03-10T13:00:00"))
        runs = await until_runs(engine, "hourly", 2)
    assert logical_dates(runs) == ["2026-03-10T11:00:00+00:00", "2026-03-10T12:00:00+00:00"]


async def test_a_paused_dag_does_not_tick_and_unpausing_runs_the_latest_interval(
    make_settings: SettingsFactory,
) -> None:
    clock = clock_at("2026-03-10T12:30:00")
    dag = scheduled_dag("hourly", schedule="@hourly")
    settings = make_settings()
    async with starting_engine(settings, dag, clock=clock) as engine:
        await until_runs(engine, "hourly", 1)
        await engine.set_paused("hourly", True)
        clock.advance(3 * HOUR)  # 15:30: ticks at 13:00, 14:00 and 15:00 pass
        await settle(engine)
        assert len(await runs_of(engine, "hourly")) == 1
    clock.advance(HOUR)  # still paused across a restart
    async with starting_engine(settings, dag, clock=clock) as engine:
        await settle(engine)
        assert len(await runs_of(engine, "hourly")) == 1
        await engine.set_paused("hourly", False)
        runs = await until_runs(engine, "hourly", 2)
        await settle(engine)
        assert len(await runs_of(engine, "hourly")) == 2
    assert logical_dates(runs)[-1] == "2026-03-10T15:00:00+00:00"


async def test_the_end_date_stops_the_ticks(make_settings: SettingsFactory) -> None:
    clock = clock_at("2026-03-10T12:30:00")
    dag = scheduled_dag("ending", schedule="@hourly", end_date="2026-03-10T13:00:00+00:00")
    async with starting_engine(make_settings(), dag, clock=clock) as engine:
        await until_runs(engine, "ending", 1)
        for hour in (13, 14, 15, 16):
            clock.set(utc(f"2026-03-10T{hour}:00:00"))
            await settle(engine)
        runs = await runs_of(engine, "ending")
    # The interval starting at the end date is the last one.
    assert logical_dates(runs) == [
        "2026-03-10T11:00:00+00:00",
        "2026-03-10T12:00:00+00:00",
        "2026-03-10T13:00:00+00:00",
    ]


async def test_the_schedule_skips_the_intervals_a_backfill_covered(
    make_settings: SettingsFactory,
) -> None:
    clock = clock_at("2026-03-10T12:30:00")
    options: dict[str, Any] = {
        "schedule": "@daily",
        "start_date": "2026-02-28",
        "catchup": True,
        "max_active_runs": 2,
    }
    dag = scheduled_dag("daily", **options)
    settings = make_settings()
    async with Engine.open(settings, dagbag=bag_of(dag), clock=clock) as engine:  # no schedule
        backfilled, skipped = await engine.backfill("daily", utc("2026-02-28"), utc("2026-03-02"))
        for run_id in backfilled:
            await engine.wait(run_id)
    assert (len(backfilled), skipped) == (3, 0)

    async with starting_engine(settings, dag, clock=clock) as engine:
        runs = await until_runs(engine, "daily", 10)
        again, skipped = await engine.backfill("daily", utc("2026-03-05"), utc("2026-03-07"))
        await settle(engine)
        runs = await runs_of(engine, "daily")
    assert (again, skipped) == ([], 3)  # the schedule covered these: the backfill skips them
    by_type = {kind: [r for r in runs if r.run_type == kind] for kind in ("backfill", "scheduled")}
    assert logical_dates(by_type["backfill"]) == [f"2026-0{d}T00:00:00+00:00" for d in _days(0, 3)]
    assert logical_dates(by_type["scheduled"]) == [
        f"2026-0{d}T00:00:00+00:00" for d in _days(3, 10)
    ]
    assert len({run.dedup_key for run in runs}) == 10


def _days(first: int, last: int) -> list[str]:
    """'2-28', '3-01', ... as 'M-DD' for the days first..last-1 counted from Feb 28."""
    start = datetime(2026, 2, 28, tzinfo=UTC)
    return [(start + timedelta(days=k)).strftime("%-m-%d") for k in range(first, last)]


async def test_a_timezone_schedule_gives_logical_dates_at_local_time_across_dst(
    make_settings: SettingsFactory,
) -> None:
    clock = clock_at("2026-03-31T12:00:00")  # Paris moved to summer time on March 29
    dag = scheduled_dag(
        "paris",
        schedule="0 3 * * *",
        timezone="Europe/Paris",
        start_date="2026-03-27",
        catchup=True,
    )
    async with starting_engine(make_settings(), dag, clock=clock) as engine:
        runs = await until_runs(engine, "paris", 4)
    assert logical_dates(runs, "Europe/Paris") == [
        "2026-03-27T03:00:00+01:00",
        "2026-03-28T03:00:00+01:00",
        "2026-03-29T03:00:00+02:00",
        "2026-03-30T03:00:00+02:00",
    ]
    assert logical_dates(runs)[0] == "2026-03-27T02:00:00+00:00"
    assert logical_dates(runs)[-1] == "2026-03-30T01:00:00+00:00"


async def test_the_next_interval_is_not_due_before_it_ends(make_settings: SettingsFactory) -> None:
    clock: NapClock = clock_at("2026-03-10T00:00:00")
    dag = scheduled_dag("daily", schedule="@daily", start_date="2026-03-10")
    async with starting_engine(make_settings(), dag, clock=clock) as engine:
        await settle(engine)
        assert await runs_of(engine, "daily") == []  # its first interval has just begun
        clock.set(utc("2026-03-11T00:00:00"))
        [run] = await until_runs(engine, "daily", 1)
    assert iso(run.logical_date) == "2026-03-10T00:00:00+00:00"


async def test_a_schedule_keeps_one_timer_however_many_ticks_pass(
    make_settings: SettingsFactory,
) -> None:
    """Each run's end looks at the schedule again; that must not leave a timer behind each time."""
    clock = clock_at("2026-03-10T12:30:00")
    dag = scheduled_dag("hourly", schedule="@hourly")
    async with starting_engine(make_settings(), dag, clock=clock) as engine:
        for hour in range(13, 19):
            await until_runs(engine, "hourly", hour - 12)
            await settle(engine)
            clock.set(utc(f"2026-03-10T{hour}:00:00"))
        await until_runs(engine, "hourly", 7)
        await settle(engine)
        # The timers not yet due are where such a leak would pile up.
        pending = [timer.due for timer in engine.pending_timers() if timer.key[0] == "hourly"]
    assert pending == [utc("2026-03-10T19:00:00")]
