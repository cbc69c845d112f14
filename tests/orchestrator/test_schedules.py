"""Schedules: cron in a timezone across DST, presets, anchored timedeltas, catchup, backfill."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterator
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from schedulekit import at, due

from orchestrator.authoring.intervals import (
    Interval,
    backfill_intervals,
    next_wakeup,
)
from orchestrator.authoring.moments import parse_moment
from orchestrator.authoring.schedules import (
    CronSchedule,
    Schedule,
    ScheduleError,
    TimedeltaSchedule,
    parse_schedule,
)
from orchestrator.errors import DagError

HOUR = 3600.0
DAY = 86400.0
PARIS = ZoneInfo("Europe/Paris")
NEW_YORK = ZoneInfo("America/New_York")


def local(moment: float, zone: ZoneInfo) -> str:
    return datetime.fromtimestamp(moment, zone).isoformat()


def ticks(schedule: Schedule, start: float, end: float) -> list[float]:
    """Every tick in `(start, end]`, walking forward."""
    found: list[float] = []
    while (tick := schedule.next_tick(found[-1] if found else start)) <= end:
        found.append(tick)
    return found


def days(first: str, count: int) -> list[Interval]:
    start = at(first)
    return [Interval(start + k * DAY, start + (k + 1) * DAY) for k in range(count)]


@pytest.fixture
def tick_calls(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Records every tick computed by any schedule, to prove nothing enumerates the past."""
    calls: list[str] = []
    for cls in (CronSchedule, TimedeltaSchedule):
        for name in ("next_tick", "tick_at_or_before"):
            monkeypatch.setattr(cls, name, _counting(getattr(cls, name), name, calls))
    yield calls


def _counting(
    method: Callable[[Schedule, float], float | None], name: str, calls: list[str]
) -> Callable[[Schedule, float], float | None]:
    def counted(self: Schedule, moment: float) -> float | None:
        calls.append(name)
        return method(self, moment)

    return counted


# --- presets, cron, timedelta ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("preset", "expected_next"),
    [
        ("@hourly", "2024-05-15T11:00:00"),
        ("@daily", "2024-05-16T00:00:00"),
        ("@midnight", "2024-05-16T00:00:00"),
        ("@weekly", "2024-05-19T00:00:00"),  # 2024-05-15 is a Wednesday; weeks start Sunday
        ("@monthly", "2024-06-01T00:00:00"),
        ("@yearly", "2025-01-01T00:00:00"),
        ("@annually", "2025-01-01T00:00:00"),
    ],
)
def test_presets_tick_where_cron_says(preset: str, expected_next: str) -> None:
    schedule = parse_schedule(preset)
    assert schedule.next_tick(at("2024-05-15T10:20:00")) == at(expected_next)
    assert schedule.description == f"{preset} (UTC)"


def test_a_preset_in_a_timezone_is_local_midnight() -> None:
    schedule = parse_schedule("@daily", timezone="Europe/Paris")
    assert schedule.description == "@daily (Europe/Paris)"
    assert schedule.next_tick(at("2024-05-15T10:00:00")) == at("2024-05-16T00:00:00", PARIS)


def test_cron_description_names_expression_and_timezone() -> None:
    assert parse_schedule(" 0  3 * * * ", timezone="Europe/Paris").description == (
        "cron '0 3 * * *' in Europe/Paris"
    )
    assert str(parse_schedule("*/5 * * * *")) == "cron '*/5 * * * *' in UTC"


def test_cron_runs_at_local_time_in_winter_and_summer() -> None:
    schedule = parse_schedule("0 3 * * *", timezone="Europe/Paris")
    assert schedule.next_tick(at("2024-01-10T12:00:00")) == at("2024-01-11T02:00:00")
    assert schedule.next_tick(at("2024-07-10T12:00:00")) == at("2024-07-11T01:00:00")


def test_next_tick_is_strictly_after_and_tick_at_or_before_includes_the_moment() -> None:
    schedule = parse_schedule("0 * * * *")
    tick = at("2024-05-15T10:00:00")
    assert schedule.next_tick(tick) == tick + HOUR
    assert schedule.tick_at_or_before(tick) == tick
    assert schedule.tick_at_or_before(tick - 0.5) == tick - HOUR
    assert schedule.next_tick(tick - 0.5) == tick


def test_paris_spring_forward_runs_a_0230_job_once_when_the_clock_jumps() -> None:
    schedule = parse_schedule("30 2 * * *", timezone="Europe/Paris")
    found = ticks(schedule, at("2024-03-30T00:00:00", PARIS), at("2024-04-01T23:00:00", PARIS))
    # 02:30 does not exist on 31 March: Debian cron runs it at 03:00 CEST, once.
    assert [local(t, PARIS) for t in found] == [
        "2024-03-30T02:30:00+01:00",
        "2024-03-31T03:00:00+02:00",
        "2024-04-01T02:30:00+02:00",
    ]


def test_paris_fall_back_runs_a_0230_job_once_in_the_repeated_hour() -> None:
    schedule = parse_schedule("30 2 * * *", timezone="Europe/Paris")
    found = ticks(schedule, at("2024-10-26T12:00:00", PARIS), at("2024-10-28T12:00:00", PARIS))
    assert [local(t, PARIS) for t in found] == [
        "2024-10-27T02:30:00+02:00",
        "2024-10-28T02:30:00+01:00",
    ]


def test_hourly_paris_keeps_real_hours_23_and_25_on_dst_days() -> None:
    schedule = parse_schedule("@hourly", timezone="Europe/Paris")
    spring = ticks(schedule, at("2024-03-31T00:00:00", PARIS), at("2024-04-01T00:00:00", PARIS))
    autumn = ticks(schedule, at("2024-10-27T00:00:00", PARIS), at("2024-10-28T00:00:00", PARIS))
    assert len(spring) == 23 and len(autumn) == 25
    assert all(b - a == HOUR for a, b in itertools.pairwise(autumn))


def test_new_york_dst_nights_run_fixed_time_jobs_once() -> None:
    spring = parse_schedule("30 2 * * *", timezone="America/New_York")
    autumn = parse_schedule("30 1 * * *", timezone="America/New_York")
    march = ticks(spring, at("2024-03-10T00:00:00", NEW_YORK), at("2024-03-11T00:00:00", NEW_YORK))
    november = ticks(
        autumn, at("2024-11-03T00:00:00", NEW_YORK), at("2024-11-04T00:00:00", NEW_YORK)
    )
    assert [local(t, NEW_YORK) for t in march] == ["2024-03-10T03:00:00-04:00"]
    assert [local(t, NEW_YORK) for t in november] == ["2024-11-03T01:30:00-04:00"]


def test_asking_from_inside_the_repeated_hour_stays_on_the_schedule() -> None:
    schedule = parse_schedule("30 2 * * *", timezone="Europe/Paris")
    second_pass = at("2024-10-27T02:10:00+01:00")  # the hour 02:00-03:00 is happening again
    assert local(schedule.next_tick(second_pass), PARIS) == "2024-10-28T02:30:00+01:00"
    before = schedule.tick_at_or_before(second_pass)
    assert before is not None and local(before, PARIS) == "2024-10-27T02:30:00+02:00"


@pytest.mark.parametrize("zone", [PARIS, NEW_YORK])
@pytest.mark.parametrize(
    "expression", ["30 2 * * *", "15,45 1-3 * * *", "0 * * * *", "*/20 2 * * *"]
)
def test_both_directions_agree_across_dst_nights(zone: ZoneInfo, expression: str) -> None:
    schedule = parse_schedule(expression, timezone=str(zone))
    for night in ("2024-03-09", "2024-10-26", "2024-11-02"):
        start = at(f"{night}T12:00:00", zone)
        known = ticks(schedule, start - DAY, start + 2 * DAY)
        for moment in range(int(start), int(start + DAY), 17 * 60 + 7):
            assert schedule.next_tick(moment) == min(t for t in known if t > moment)
            assert schedule.tick_at_or_before(moment) == max(t for t in known if t <= moment)


def test_timedelta_ticks_are_anchored_at_the_start_date() -> None:
    anchor = at("2024-01-01T00:20:00")
    schedule = parse_schedule(timedelta(hours=6), anchor=anchor)
    assert schedule.description == "every 6:00:00"
    assert schedule.next_tick(at("2024-03-01T13:00:00")) == at("2024-03-01T18:20:00")
    assert schedule.tick_at_or_before(at("2024-03-01T18:20:00")) == at("2024-03-01T18:20:00")
    assert schedule.tick_at_or_before(anchor - 1) == anchor - 6 * HOUR


def test_timedelta_without_anchor_counts_from_the_epoch_so_restarts_agree() -> None:
    schedule = parse_schedule(timedelta(minutes=90))
    moment = at("2024-05-15T10:07:31")
    assert schedule.next_tick(moment) % (90 * 60) == 0
    assert parse_schedule(timedelta(minutes=90)).next_tick(moment) == schedule.next_tick(moment)


# --- schedule errors ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("61 * * * *", "minute field '61': value 61 is out of range 0-59"),
        ("0 24 * * *", "hour field '24': value 24 is out of range 0-23"),
        ("0 0 0 * *", "day-of-month field '0': value 0 is out of range 1-31"),
        ("0 0 * 13 *", "month field '13': value 13 is out of range 1-12"),
        ("0 0 * * 8", "day-of-week field '8': value 8 is out of range 0-7"),
        ("0 0 * * MOON", "day-of-week field 'MOON' is not valid: day-of-week takes 0-7 or SUN-SAT"),
        ("5-2 * * * *", "minute field '5-2' is not valid: minute takes 0-59"),
        ("0 0 31 2 *", "day-of-month field '31': that day never occurs in month '2'"),
    ],
)
def test_a_bad_cron_field_is_named_with_its_range(expression: str, expected: str) -> None:
    with pytest.raises(ScheduleError) as caught:
        parse_schedule(expression)
    assert f"cron expression {expression!r}: {expected}" in str(caught.value)


@pytest.mark.parametrize("expression", ["0 0 3 * * *", "0 0 3 * * * 2024", "0 3 * *"])
def test_only_five_field_cron_is_accepted(expression: str) -> None:
    count = len(expression.split())
    with pytest.raises(ScheduleError, match=f"has {count} fields; expected 5: minute hour"):
        parse_schedule(expression)


def test_an_empty_schedule_says_what_is_accepted() -> None:
    with pytest.raises(ScheduleError, match=r"empty schedule; expected a cron string"):
        parse_schedule("   ")


def test_a_misspelt_preset_gets_a_suggestion() -> None:
    with pytest.raises(
        ScheduleError, match=r"unknown schedule preset '@dayly'; did you mean '@daily'"
    ):
        parse_schedule("@dayly")
    with pytest.raises(
        ScheduleError, match=r"unknown schedule preset '@reboot'\. Presets: @hourly, @daily"
    ):
        parse_schedule("@reboot")


@pytest.mark.parametrize(
    ("name", "suggestion"),
    [("Europe/Pariss", "Europe/Paris"), ("america/new_york", "America/New_York")],
)
def test_an_unknown_timezone_gets_a_close_match(name: str, suggestion: str) -> None:
    with pytest.raises(ScheduleError) as caught:
        parse_schedule("0 3 * * *", timezone=name)
    assert f"unknown timezone {name!r}; did you mean '{suggestion}'?" in str(caught.value)


def test_a_timezone_is_checked_for_timedelta_schedules_too() -> None:
    with pytest.raises(ScheduleError, match="unknown timezone 'Mars/Olympus'"):
        parse_schedule(timedelta(hours=1), timezone="Mars/Olympus")
    with pytest.raises(
        ScheduleError, match="timezone must be an IANA name like 'Europe/Paris'; got 1"
    ):
        parse_schedule("@daily", timezone=1)  # type: ignore[arg-type]


@pytest.mark.parametrize("every", [timedelta(0), timedelta(hours=-1), timedelta(milliseconds=500)])
def test_a_timedelta_must_be_at_least_a_second(every: timedelta) -> None:
    with pytest.raises(ScheduleError, match=r"timedelta schedule must be at least 1 second; got"):
        parse_schedule(every)


@pytest.mark.parametrize(
    ("value", "shown"), [(5, "int 5"), (None, "NoneType None"), (3600.0, "float 3600.0")]
)
def test_a_schedule_of_the_wrong_type_lists_what_is_accepted(value: object, shown: str) -> None:
    with pytest.raises(ScheduleError) as caught:
        parse_schedule(value)  # type: ignore[arg-type]
    message = str(caught.value)
    assert "a cron string ('0 3 * * *'), a preset ('@daily') or a datetime.timedelta" in message
    assert message.endswith(f"got {shown}")


def test_schedule_errors_are_dag_errors_that_carry_a_location() -> None:
    error = ScheduleError("bad cron", file="dags/train.py", line=12)
    assert isinstance(error, DagError)
    assert str(error) == "dags/train.py:12: bad cron"


# --- parse_moment ------------------------------------------------------------------------------


def test_moments_in_every_accepted_form() -> None:
    paris_midnight = at("2024-01-31T00:00:00", PARIS)
    assert (
        parse_moment(date(2024, 1, 31), timezone="Europe/Paris", what="start_date")
        == paris_midnight
    )
    assert parse_moment("2024-01-31", timezone="Europe/Paris", what="start_date") == paris_midnight
    assert parse_moment(datetime(2024, 1, 31), timezone="Europe/Paris", what="x") == paris_midnight
    aware = datetime(2024, 1, 31, 3, tzinfo=NEW_YORK)
    assert parse_moment(aware, timezone="Europe/Paris", what="x") == aware.timestamp()
    assert parse_moment("2024-01-31T03:00:00Z", timezone="Europe/Paris", what="x") == at(
        "2024-01-31T03:00:00"
    )
    assert parse_moment("2024-01-31T03:00:00+01:00", timezone="UTC", what="x") == at(
        "2024-01-31T02:00:00"
    )
    assert parse_moment(1_700_000_000, timezone="UTC", what="x") == 1_700_000_000.0
    assert parse_moment(None, timezone="UTC", what="end_date") is None


@pytest.mark.parametrize("text", ["yesterday", "2024-13-01", "31/01/2024", ""])
def test_an_unparsable_moment_names_the_argument(text: str) -> None:
    with pytest.raises(ScheduleError) as caught:
        parse_moment(text, timezone="UTC", what="start_date")
    assert f"start_date {text!r} is not an ISO-8601 date or datetime" in str(caught.value)


@pytest.mark.parametrize(
    "value", [datetime(1969, 12, 31, 23), date(1900, 1, 1), "0001-01-01", -1.0, 1e12, math.nan]
)
def test_moments_outside_1970_to_9999_are_refused(value: object) -> None:
    with pytest.raises(ScheduleError, match=r"end_date .* is out of range: .*1970-9999"):
        parse_moment(value, timezone="UTC", what="end_date")  # type: ignore[arg-type]


def test_year_9999_is_still_accepted() -> None:
    assert parse_moment(date(9999, 12, 31), timezone="UTC", what="end_date") == at(
        "9999-12-31T00:00:00"
    )


@pytest.mark.parametrize(
    ("value", "shown"), [(True, "bool True"), ([2024, 1, 1], "list [2024, 1, 1]")]
)
def test_a_moment_of_the_wrong_type_lists_what_is_accepted(value: object, shown: str) -> None:
    with pytest.raises(ScheduleError) as caught:
        parse_moment(value, timezone="UTC", what="start_date")  # type: ignore[arg-type]
    assert str(caught.value).startswith("start_date must be a datetime, a date, an ISO-8601 string")
    assert str(caught.value).endswith(f"got {shown}")


# --- intervals_due -----------------------------------------------------------------------------


def test_an_interval_is_due_only_once_it_has_ended() -> None:
    # Today's interval is still in progress at 13:00.
    assert due("@daily", "2024-05-15T13:00:00") == days("2024-05-14", 1)


def test_no_catchup_after_three_days_down_runs_only_the_latest_interval() -> None:
    # It ran for the 11th, then the daemon was down until the 15th.
    latest = due("@daily", "2024-05-15T13:00:00", after="2024-05-11", start="2024-01-01")
    assert latest == days("2024-05-14", 1)


def test_no_catchup_creates_nothing_when_the_latest_interval_already_ran() -> None:
    assert due("@daily", "2024-05-15T23:59:59", after="2024-05-14") == []


def test_catchup_runs_every_missed_interval_in_batches_of_limit() -> None:
    first = due("@daily", "2024-05-15T13:00:00", after="2024-05-10", catchup=True, limit=3)
    assert first == days("2024-05-11", 3)
    rest = due("@daily", "2024-05-15T13:00:00", after="2024-05-13", catchup=True, limit=3)
    assert rest == days("2024-05-14", 1)


def test_catchup_from_a_start_date_begins_at_the_first_tick_after_it() -> None:
    backlog = due("@daily", "2024-05-15T13:00:00", start="2024-05-12T08:00:00", catchup=True)
    assert backlog == days("2024-05-13", 2)


def test_catchup_with_neither_start_nor_history_runs_only_the_latest() -> None:
    latest = due("@hourly", "2024-05-15T13:30:00", catchup=True)
    assert latest == [Interval(at("2024-05-15T12:00:00"), at("2024-05-15T13:00:00"))]


def test_catchup_n_runs_only_the_latest_n_oldest_first() -> None:
    now, start = "2024-05-15T13:00:00", "2024-01-01"
    assert due("@daily", now, start=start, catchup=3) == days("2024-05-12", 3)
    assert due("@daily", now, start=start, catchup=3, limit=2) == days("2024-05-12", 2)
    next_batch = due("@daily", now, start=start, after="2024-05-13", catchup=3)
    assert next_batch == days("2024-05-14", 1)


def test_catchup_n_stops_at_the_start_date() -> None:
    backlog = due("@daily", "2024-05-15T13:00:00", start="2024-05-13", catchup=5)
    assert backlog == days("2024-05-13", 2)


def test_a_start_date_a_year_ago_does_not_enumerate_its_ticks(tick_calls: list[str]) -> None:
    schedule = parse_schedule("@hourly", timezone="Europe/Paris")
    latest = due(schedule, "2024-05-15T13:30:00", start="2023-05-15", limit=1000)
    assert latest == [Interval(at("2024-05-15T12:00:00"), at("2024-05-15T13:00:00"))]
    assert len(tick_calls) < 20  # not 8,760


def test_catchup_n_over_ten_years_walks_back_only_n_ticks(tick_calls: list[str]) -> None:
    schedule = parse_schedule(timedelta(hours=1), anchor=at("2014-05-15"))
    backlog = due(
        schedule, "2024-05-15T13:30:00", after="2014-05-15", start="2014-05-15", catchup=4
    )
    assert [i.start for i in backlog] == [at("2024-05-15T09:00:00") + k * HOUR for k in range(4)]
    assert len(tick_calls) < 40


def test_a_huge_catchup_backlog_is_bounded_by_limit(tick_calls: list[str]) -> None:
    backlog = due("*/5 * * * *", "2024-05-15T13:30:00", start="2014-01-01", catchup=True, limit=50)
    assert len(backlog) == 50 and backlog[0].start == at("2014-01-01")
    assert all(a.end == b.start for a, b in itertools.pairwise(backlog))
    assert len(tick_calls) < 100


def test_end_date_includes_the_interval_starting_at_it_and_nothing_after() -> None:
    every_day = due("@daily", "2024-05-15T13", start="2024-05-01", end="2024-05-03", catchup=True)
    assert every_day == days("2024-05-01", 3)
    latest = due("@daily", "2024-05-15T13", start="2024-05-01", end="2024-05-03")
    assert latest == days("2024-05-03", 1)
    schedule, end = parse_schedule("@daily"), at("2024-05-03")
    assert next_wakeup(schedule, now=at("2024-05-03T12:00:00"), end=end) == at("2024-05-04")
    assert next_wakeup(schedule, now=at("2024-05-04"), end=end) is None


def test_a_start_date_in_the_future_is_not_due_and_wakes_when_its_first_interval_ends() -> None:
    # The first interval is [06-02, 06-03): it can only be due on 06-03.
    assert due("@daily", "2024-05-15T13:00:00", start="2024-06-01T08:00:00", catchup=True) == []
    wakeup = next_wakeup(
        parse_schedule("@daily"),
        now=at("2024-05-15T13:00:00"),
        end=None,
        start=at("2024-06-01T08:00:00"),
    )
    assert wakeup == at("2024-06-03")


def test_next_wakeup_is_the_end_of_the_interval_in_progress() -> None:
    schedule = parse_schedule("0 3 * * *", timezone="Europe/Paris")
    tomorrow_3am = at("2024-05-16T03:00:00", PARIS)
    assert next_wakeup(schedule, now=at("2024-05-15T13:00:00"), end=None) == tomorrow_3am
    assert next_wakeup(schedule, now=tomorrow_3am, end=None) == tomorrow_3am + DAY
    started_long_ago = next_wakeup(schedule, now=at("2024-05-15T13:00:00"), end=None, start=0.0)
    assert started_long_ago == tomorrow_3am


def test_a_start_date_after_the_end_date_never_wakes() -> None:
    wakeup = next_wakeup(
        parse_schedule("@daily"),
        now=at("2024-05-15T13:00:00"),
        end=at("2024-06-01T12:00:00"),
        start=at("2024-06-01T08:00:00"),
    )
    assert wakeup is None


@pytest.mark.parametrize("catchup", [0, -2, "yes", 1.5])
def test_a_bad_catchup_value_says_what_it_can_be(catchup: int) -> None:
    with pytest.raises(ScheduleError, match=r"catchup must be True, False or a positive int .*got"):
        due("@daily", "2024-05-15", catchup=catchup)


def test_a_zero_limit_creates_nothing() -> None:
    assert due("@daily", "2024-05-15", start="2024-01-01", catchup=True, limit=0) == []


# --- backfill ----------------------------------------------------------------------------------


def test_backfill_covers_starts_in_the_range_both_ends_included() -> None:
    schedule = parse_schedule("@daily")
    assert backfill_intervals(schedule, start=at("2024-01-01"), end=at("2024-01-05")) == days(
        "2024-01-01", 5
    )
    assert backfill_intervals(
        schedule, start=at("2024-01-01T06:00:00"), end=at("2024-01-02T05:00:00")
    ) == (days("2024-01-02", 1))


def test_backfill_of_an_anchored_timedelta_keeps_its_anchor() -> None:
    schedule = parse_schedule(timedelta(hours=12), anchor=at("2024-01-01T06:00:00"))
    found = backfill_intervals(
        schedule, start=at("2024-01-01T00:00:00"), end=at("2024-01-02T00:00:00")
    )
    assert [i.start for i in found] == [at("2024-01-01T06:00:00"), at("2024-01-01T18:00:00")]
    assert found[-1].end == at("2024-01-02T06:00:00")


def test_backfill_over_the_limit_says_how_many_and_to_narrow_the_range() -> None:
    with pytest.raises(ScheduleError) as caught:
        backfill_intervals(
            parse_schedule("@hourly"),
            start=at("2024-01-01"),
            end=at("2024-12-31T23:00:00"),
            limit=1000,
        )
    message = str(caught.value)
    assert "backfill of @hourly (UTC) from 2024-01-01T00:00:00+00:00" in message
    assert (
        "covers about 8,784 intervals, more than the limit of 1,000; narrow the date range"
        in message
    )


def test_backfill_rejects_a_reversed_range_and_a_bad_limit() -> None:
    schedule = parse_schedule("@daily")
    with pytest.raises(
        ScheduleError, match=r"backfill end 2024-01-01T00:00:00\+00:00 is before its start"
    ):
        backfill_intervals(schedule, start=at("2024-02-01"), end=at("2024-01-01"))
    with pytest.raises(ScheduleError, match=r"backfill limit must be a positive int; got int 0"):
        backfill_intervals(schedule, start=at("2024-01-01"), end=at("2024-02-01"), limit=0)
