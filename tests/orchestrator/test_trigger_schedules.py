"""Trigger schedules: a run at each tick of a cron, timedelta, several crons or listed moments,
covering the fixed interval before it; catchup, end dates, wake-ups and backfills over them."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest
from schedulekit import at, due

from orchestrator.authoring.intervals import (
    Interval,
    backfill_intervals,
    next_wakeup,
)
from orchestrator.authoring.schedules import (
    CronSchedule,
    ScheduleError,
    TimedeltaSchedule,
    parse_schedule,
)
from orchestrator.authoring.trigger_schedules import CronUnion, FixedMoments, TriggerSchedule

HOUR = 3600.0
AT_SIX = CronSchedule("0 6 * * *")


def exact(*texts: str) -> list[Interval]:
    return [Interval(at(text), at(text)) for text in texts]


def test_a_run_comes_due_at_its_tick_with_an_empty_interval() -> None:
    schedule = TriggerSchedule(AT_SIX)
    assert due(schedule, "2024-01-02T05:59:59") == exact("2024-01-01T06:00:00")
    assert due(schedule, "2024-01-02T06:00:00") == exact("2024-01-02T06:00:00")
    assert next_wakeup(schedule, now=at("2024-01-02T06:00:00"), end=None) == at(
        "2024-01-03T06:00:00"
    )


def test_an_interval_covers_the_stretch_before_the_tick_and_bounds_apply_to_ticks() -> None:
    schedule = TriggerSchedule(AT_SIX, interval=6 * HOUR)
    found = due(
        schedule,
        "2024-01-10T00:00:00",
        start="2024-01-01T06:00:00",
        end="2024-01-02T06:00:00",
        catchup=True,
    )
    assert found == [
        Interval(at("2024-01-01T00:00:00"), at("2024-01-01T06:00:00")),
        Interval(at("2024-01-02T00:00:00"), at("2024-01-02T06:00:00")),
    ]
    assert backfill_intervals(schedule, start=at("2024-01-01"), end=at("2024-01-02")) == found[:1]
    assert next_wakeup(
        schedule, now=at("2024-01-01T03:00:00"), end=None, start=at("2024-01-01")
    ) == at("2024-01-01T06:00:00")


def test_catchup_walks_every_tick_after_the_latest_run() -> None:
    schedule = TriggerSchedule(TimedeltaSchedule(timedelta(hours=12), anchor=at("2024-01-01")))
    found = due(schedule, "2024-01-02T13:00:00", after="2024-01-01T00:00:00", catchup=True)
    assert found == exact("2024-01-01T12:00:00", "2024-01-02T00:00:00", "2024-01-02T12:00:00")


@pytest.mark.parametrize(
    ("run_immediately", "runs"),
    [(False, False), (True, True), (HOUR, True), (HOUR / 2, False)],
)
def test_a_dag_that_never_ran_skips_a_tick_before_it_was_watched_unless_told(
    run_immediately: bool | float, runs: bool
) -> None:
    schedule = TriggerSchedule(AT_SIX, run_immediately=run_immediately)
    found = due(schedule, "2024-01-01T07:00:00", since="2024-01-01T07:00:00")
    assert found == (exact("2024-01-01T06:00:00") if runs else [])
    # The next tick comes after the DAG was watched: it runs whatever run_immediately says.
    assert due(schedule, "2024-01-02T06:00:01", since="2024-01-01T07:00:00") == exact(
        "2024-01-02T06:00:00"
    )


def test_a_data_interval_schedule_runs_a_late_interval_at_once() -> None:
    found = due(parse_schedule("@daily"), "2024-01-02T07:00:00", since="2024-01-02T07:00:00")
    assert found == [Interval(at("2024-01-01"), at("2024-01-02"))]


def test_fixed_moments_are_sorted_once_each_and_end() -> None:
    moments = FixedMoments((at("2024-03-01"), at("2024-01-01"), at("2024-03-01")))
    schedule = TriggerSchedule(moments, run_immediately=True)
    assert moments.moments == (at("2024-01-01"), at("2024-03-01"))
    assert due(schedule, "2024-06-01", start="2023-12-01", catchup=True) == exact(
        "2024-01-01T00:00:00", "2024-03-01T00:00:00"
    )
    assert next_wakeup(schedule, now=at("2024-06-01"), end=None) is None
    assert moments.tick_at_or_before(at("2023-12-31")) is None


def test_a_union_of_crons_ticks_at_each_once() -> None:
    union = CronUnion((AT_SIX, CronSchedule("30 18 * * *"), CronSchedule("0 6 * * 1")))
    schedule = TriggerSchedule(union)
    found = due(schedule, "2024-01-02T07:00:00", start="2024-01-01", catchup=True)
    assert found == exact("2024-01-01T06:00:00", "2024-01-01T18:30:00", "2024-01-02T06:00:00")


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: TriggerSchedule(AT_SIX, interval=-1), "interval must be seconds >= 0"),
        (lambda: TriggerSchedule(AT_SIX, run_immediately="yes"), "run_immediately must be"),
        (lambda: TriggerSchedule(TriggerSchedule(AT_SIX)), "runs at the ticks of a schedule"),
        (lambda: FixedMoments(()), "needs at least one"),
        (lambda: CronUnion(()), "needs at least one cron"),
    ],
)
def test_a_bad_trigger_schedule_is_named(build: Callable[[], object], message: str) -> None:
    with pytest.raises(ScheduleError, match=message):
        build()
