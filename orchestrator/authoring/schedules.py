"""Schedules: when a DAG's data intervals start and end, and which ones are due.

A schedule is a sequence of *ticks*; interval k is `[tick_k, tick_k+1)`, and its run is due once
its end has passed (like Airflow's data intervals). Three spellings build one:

- a cron string, `"0 3 * * *"`, evaluated in the local time of an IANA `timezone` with Debian
  cron's DST rules (via `cronsim`): a 02:30 job runs once on both DST nights;
- a preset, `"@daily"` (also @hourly @midnight @weekly @monthly @yearly @annually);
- a `timedelta`, anchored at the start date (or the Unix epoch) so ticks survive restarts.

Everything here is pure and synchronous: times are float seconds since the epoch (UTC), `now` is
an argument, and the scheduler decides what to do with the answers. Working out the latest
interval walks back from `now`, so a start date ten years ago costs a handful of ticks, not
87,600.
"""

from __future__ import annotations

import difflib
import math
import re
import zoneinfo
from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo

from cronsim import CronSim, CronSimError

from orchestrator.errors import DagError

PRESETS: dict[str, str] = {
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
}
# (name, lowest, highest, symbolic names) of the five cron fields, in order.
CRON_FIELDS: tuple[tuple[str, int, int, str], ...] = (
    ("minute", 0, 59, ""),
    ("hour", 0, 23, ""),
    ("day-of-month", 1, 31, ""),
    ("month", 1, 12, " or JAN-DEC"),
    ("day-of-week", 0, 7, " or SUN-SAT (0 and 7 are Sunday)"),
)
# Walking the cron sequence across a repeated DST hour takes at most one step per tick in it.
_MAX_DST_STEPS = 1_000
# 10000-01-01T00:00:00Z: the first moment `datetime` cannot show.
_END_OF_TIME = 253_402_300_800.0
_ACCEPTED_SCHEDULES = (
    "a cron string ('0 3 * * *'), a preset ('@daily') or a datetime.timedelta (timedelta(hours=1))"
)


class ScheduleError(DagError):
    """A schedule, timezone, start/end date or catchup value that cannot be used."""


@dataclass(frozen=True)
class Interval:
    """A data interval `[start, end)`: the slice of time one scheduled run covers."""

    start: float
    end: float


class Schedule(ABC):
    """A sequence of ticks; consecutive ticks bound the data intervals."""

    @property
    @abstractmethod
    def description(self) -> str:
        """How a human would say it: "cron '0 3 * * *' in Europe/Paris", "every 1:00:00"."""

    @abstractmethod
    def next_tick(self, moment: float) -> float:
        """The first tick strictly after `moment`; `math.inf` when there is none."""

    @abstractmethod
    def tick_at_or_before(self, moment: float) -> float | None:
        """The latest tick at or before `moment`; None when there is none."""

    def __str__(self) -> str:
        return self.description


@dataclass(frozen=True)
class CronSchedule(Schedule):
    """A five-field cron expression evaluated in the local time of `timezone`.

    DST follows Debian cron (cronsim's model): a job at a fixed time that falls in the
    spring-forward gap runs when the clock jumps, and one in the repeated fall-back hour runs
    once; jobs that run every minute or hour keep running on the real clock.
    """

    expression: str
    timezone: str = "UTC"
    preset: str | None = None

    def __post_init__(self) -> None:
        _check_cron(self.expression)
        load_timezone(self.timezone)

    @property
    def description(self) -> str:
        if self.preset is not None:
            return f"{self.preset} ({self.timezone})"
        return f"cron '{self.expression}' in {self.timezone}"

    def next_tick(self, moment: float) -> float:
        tick = self._raw_next(moment)
        for _ in range(_MAX_DST_STEPS):
            if tick > moment:
                return tick
            # Started inside a repeated (fall-back) hour, cronsim may answer with the first
            # pass of that hour: walk its sequence on from there, as it would have.
            tick = self._raw_next(tick)
        raise ScheduleError(f"{self.description}: no tick found after {_iso(moment)}")

    def tick_at_or_before(self, moment: float) -> float | None:
        bound = moment
        for _ in range(_MAX_DST_STEPS):
            candidate = self._raw_at_or_before(bound)
            if candidate is None:
                return None
            # Going backwards, cronsim can name a tick the forward walk skips (a repeated
            # hour); the forward walk is the schedule, so snap the candidate onto it.
            tick = self.next_tick(candidate - 1)
            if tick <= moment:
                return self._last_tick_until(tick, moment)
            bound = candidate - 1
        raise ScheduleError(f"{self.description}: no tick found before {_iso(moment)}")

    def _last_tick_until(self, tick: float, moment: float) -> float:
        while (following := self.next_tick(tick)) <= moment:
            tick = following
        return tick

    def _raw_next(self, moment: float) -> float:
        try:
            start = datetime.fromtimestamp(math.floor(moment), load_timezone(self.timezone))
            return next(CronSim(self.expression, start)).timestamp()
        except (StopIteration, OverflowError, ValueError):
            return math.inf  # past year 9999, or no match in cronsim's 50-year horizon

    def _raw_at_or_before(self, moment: float) -> float | None:
        try:
            # cronsim steps one second back before matching: start just after `moment`.
            start = datetime.fromtimestamp(math.floor(moment) + 1, load_timezone(self.timezone))
            return next(CronSim(self.expression, start, reverse=True)).timestamp()
        except (StopIteration, OverflowError, ValueError):
            return None


@dataclass(frozen=True)
class TimedeltaSchedule(Schedule):
    """A tick every `every`, at `anchor + k * every` for every integer k.

    Anchored (at the start date, or the Unix epoch) rather than counted from "now", so a
    restart does not shift the ticks. Elapsed time, not wall-clock time: DST does not move it.
    """

    every: timedelta
    anchor: float = 0.0

    def __post_init__(self) -> None:
        _check_timedelta(self.every)

    @property
    def description(self) -> str:
        return f"every {self.every}"

    def next_tick(self, moment: float) -> float:
        index = math.floor((moment - self.anchor) / self._step) + 1
        while self._tick(index - 1) > moment:  # float rounding can land one step off
            index -= 1
        while self._tick(index) <= moment:
            index += 1
        return self._tick(index)

    def tick_at_or_before(self, moment: float) -> float | None:
        index = math.floor((moment - self.anchor) / self._step)
        while self._tick(index + 1) <= moment:
            index += 1
        while self._tick(index) > moment:
            index -= 1
        return self._tick(index)

    @property
    def _step(self) -> float:
        return self.every.total_seconds()

    def _tick(self, index: int) -> float:
        return self.anchor + index * self._step


def parse_schedule(
    value: str | timedelta, *, timezone: str = "UTC", anchor: float | None = None
) -> Schedule:
    """Build the schedule a DAG asked for, or say precisely what is wrong with it.

    `anchor` (the start date) only matters for a timedelta; cron ticks are fixed by the clock.
    """
    if isinstance(value, timedelta):
        load_timezone(timezone)  # unused by elapsed-time ticks, but a typo is still a typo
        _check_anchor(anchor)
        return TimedeltaSchedule(every=value, anchor=0.0 if anchor is None else anchor)
    if not isinstance(value, str):
        raise ScheduleError(f"schedule must be {_ACCEPTED_SCHEDULES}; got {_describe(value)}")
    text = " ".join(value.split())
    if text.startswith("@"):
        return CronSchedule(_preset_expression(text), timezone, preset=text.lower())
    return CronSchedule(text, timezone)


def load_timezone(name: str) -> tzinfo:
    """The tzinfo for an IANA name; a typo gets a did-you-mean."""
    if not isinstance(name, str):
        raise ScheduleError(f"timezone must be an IANA name like 'Europe/Paris'; got {name!r}")
    if name == "UTC":
        return UTC  # cronsim takes its DST-free fast path for exactly this tzinfo
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ScheduleError(_unknown_timezone_message(name)) from None


def _unknown_timezone_message(name: str) -> str:
    known = {zone.lower(): zone for zone in zoneinfo.available_timezones()}
    close = difflib.get_close_matches(name.lower(), list(known), n=1)
    hint = f"; did you mean '{known[close[0]]}'?" if close else "."
    return f"unknown timezone {name!r}{hint} Use an IANA name such as 'Europe/Paris' or 'UTC'."


def _preset_expression(text: str) -> str:
    expression = PRESETS.get(text.lower())
    if expression is None:
        close = difflib.get_close_matches(text.lower(), list(PRESETS), n=1)
        hint = f"; did you mean '{close[0]}'?" if close else "."
        raise ScheduleError(
            f"unknown schedule preset {text!r}{hint} Presets: {', '.join(PRESETS)}."
        )
    return expression


def _check_cron(expression: str) -> None:
    """Reject anything but five valid fields, naming the field and its allowed values."""
    fields = expression.split()
    if not fields:
        raise ScheduleError(f"empty schedule; expected {_ACCEPTED_SCHEDULES}")
    if len(fields) != len(CRON_FIELDS):
        raise ScheduleError(
            f"cron expression {expression!r} has {len(fields)} fields; expected 5: "
            "minute hour day-of-month month day-of-week (seconds and years are not supported)"
        )
    try:
        CronSim(expression, datetime(2000, 1, 1, tzinfo=UTC))
    except CronSimError as error:
        raise ScheduleError(_cron_field_message(expression, fields, str(error))) from None


def _cron_field_message(expression: str, fields: list[str], library_message: str) -> str:
    """Turn cronsim's "Bad minute" into which value is wrong and what the field takes."""
    bad_name = library_message.removeprefix("Bad ").strip()
    for (name, lowest, highest, names), text in zip(CRON_FIELDS, fields, strict=True):
        if name != bad_name:
            continue
        prefix = f"cron expression {expression!r}: {name} field {text!r}"
        for number in map(int, re.findall(r"\d+", text.split("/")[0])):
            if not lowest <= number <= highest:
                return f"{prefix}: value {number} is out of range {lowest}-{highest}"
        if name == "day-of-month" and fields[3] != "*":
            return f"{prefix}: that day never occurs in month {fields[3]!r}"
        return (
            f"{prefix} is not valid: {name} takes {lowest}-{highest}{names}, '*', "
            "ranges 'a-b' with a <= b, steps '*/n' with n >= 1 and lists 'a,b'"
        )
    return f"cron expression {expression!r} is not valid: {library_message}"


def _check_timedelta(every: timedelta) -> None:
    if every < timedelta(seconds=1):
        raise ScheduleError(f"a timedelta schedule must be at least 1 second; got {every!r}")


def _check_anchor(anchor: float | None) -> None:
    if anchor is not None and (isinstance(anchor, bool) or not math.isfinite(anchor)):
        raise ScheduleError(f"anchor must be seconds since the epoch; got {anchor!r}")


def _describe(value: object) -> str:
    return f"{type(value).__name__} {value!r}"


def _iso(moment: float) -> str:
    try:
        return datetime.fromtimestamp(moment, UTC).isoformat()
    except (OverflowError, ValueError, OSError):
        return repr(moment)


def parse_moment(
    value: datetime | date | str | float | None, *, timezone: str, what: str
) -> float | None:
    """A user's start_date / end_date as seconds since the epoch; naive values are local.

    Accepts an aware or naive datetime, a date (midnight in `timezone`), an ISO-8601 string
    (either of those), epoch seconds, or None. `what` names the argument in error messages.
    """
    if value is None:
        return None
    if isinstance(value, bool):
        raise ScheduleError(_moment_type_message(value, what))
    if isinstance(value, int | float):
        return _epoch_seconds(float(value), what)
    if isinstance(value, str):
        value = _parse_iso(value, what)
    if isinstance(value, datetime):
        return _datetime_seconds(value, timezone, what)
    if isinstance(value, date):
        return _datetime_seconds(datetime.combine(value, time()), timezone, what)
    raise ScheduleError(_moment_type_message(value, what))


def _moment_type_message(value: object, what: str) -> str:
    return (
        f"{what} must be a datetime, a date, an ISO-8601 string ('2024-01-31' or "
        f"'2024-01-31T03:00:00+01:00') or epoch seconds; got {_describe(value)}"
    )


def _parse_iso(text: str, what: str) -> datetime:
    try:
        return datetime.fromisoformat(text.strip())
    except ValueError:
        raise ScheduleError(
            f"{what} {text!r} is not an ISO-8601 date or datetime "
            "(for example '2024-01-31' or '2024-01-31T03:00:00+01:00')"
        ) from None


def _datetime_seconds(value: datetime, timezone: str, what: str) -> float:
    if not 1970 <= value.year <= 9999:
        raise ScheduleError(f"{what} {value.isoformat()} is out of range: use years 1970-9999")
    if value.tzinfo is None or value.utcoffset() is None:
        value = value.replace(tzinfo=load_timezone(timezone))
    return value.timestamp()


def _epoch_seconds(value: float, what: str) -> float:
    if not (math.isfinite(value) and 0 <= value < _END_OF_TIME):
        raise ScheduleError(
            f"{what} {value!r} is out of range: epoch seconds must fall in years 1970-9999"
        )
    return value


def intervals_due(
    schedule: Schedule,
    *,
    now: float,
    after: float | None,
    start: float | None,
    end: float | None,
    catchup: bool | int,
    limit: int,
) -> list[Interval]:
    """The complete intervals that have no run yet, oldest first, at most `limit` of them.

    `after` is the start of the latest interval that has a run. An interval is eligible when
    its start is >= `start` and <= `end` (end_date includes the interval starting at it).
    catchup False: only the latest complete interval (ticks missed while down fire once);
    True: every eligible interval since `after` or `start` (with neither, only the latest);
    N: the latest N of those. The work is O(result + a few ticks): it walks back from `now`.
    """
    depth = _catchup_depth(catchup)
    latest = _latest_complete_start(schedule, now=now, end=end)
    if limit <= 0 or latest is None or not _is_eligible(latest, after=after, start=start):
        return []
    if depth is None and (after is not None or start is not None):
        first = _first_eligible_start(schedule, after=after, start=start)
        return _walk_forward(schedule, first=first, last=latest, limit=limit)
    # catchup=True with neither `after` nor `start` has no backlog to catch up: the latest only.
    intervals = _walk_back(schedule, latest, after=after, start=start, depth=depth or 1)
    return intervals[:limit]


def _catchup_depth(catchup: bool | int) -> int | None:
    """How many of the latest intervals catchup allows; None means all of them."""
    if catchup is True:
        return None
    if catchup is False:
        return 1
    if isinstance(catchup, int) and catchup >= 1:
        return catchup
    raise ScheduleError(
        "catchup must be True, False or a positive int (how many of the latest missed "
        f"intervals to run); got {_describe(catchup)}"
    )


def _latest_complete_start(schedule: Schedule, *, now: float, end: float | None) -> float | None:
    """The start of the newest interval that has ended by `now` and starts at or before `end`."""
    boundary = schedule.tick_at_or_before(now)
    latest = None if boundary is None else _tick_before(schedule, boundary)
    if latest is not None and end is not None and latest > end:
        # Its interval ends at the next tick, which is <= `latest`, so it is complete too.
        latest = schedule.tick_at_or_before(end)
    return latest


def _tick_before(schedule: Schedule, moment: float) -> float | None:
    return schedule.tick_at_or_before(math.nextafter(moment, -math.inf))


def _is_eligible(tick: float, *, after: float | None, start: float | None) -> bool:
    return (after is None or tick > after) and (start is None or tick >= start)


def _first_eligible_start(schedule: Schedule, *, after: float | None, start: float | None) -> float:
    """The oldest tick newer than `after` and at or after `start` (one of them is given)."""
    candidates = []
    if after is not None:
        candidates.append(schedule.next_tick(after))
    if start is not None:
        candidates.append(_first_tick_at_or_after(schedule, start))
    return max(candidates)


def _first_tick_at_or_after(schedule: Schedule, moment: float) -> float:
    return moment if schedule.tick_at_or_before(moment) == moment else schedule.next_tick(moment)


def _walk_forward(schedule: Schedule, *, first: float, last: float, limit: int) -> list[Interval]:
    intervals: list[Interval] = []
    tick = first
    while tick <= last and len(intervals) < limit:
        intervals.append(Interval(tick, schedule.next_tick(tick)))
        tick = intervals[-1].end
    return intervals


def _walk_back(
    schedule: Schedule, latest: float, *, after: float | None, start: float | None, depth: int
) -> list[Interval]:
    """The `depth` newest eligible intervals ending with the one at `latest`, oldest first."""
    intervals = [Interval(latest, schedule.next_tick(latest))]
    while len(intervals) < depth:
        earlier = _tick_before(schedule, intervals[-1].start)
        if earlier is None or not _is_eligible(earlier, after=after, start=start):
            break
        intervals.append(Interval(earlier, intervals[-1].start))
    intervals.reverse()
    return intervals


def next_wakeup(
    schedule: Schedule, *, now: float, end: float | None, start: float | None = None
) -> float | None:
    """When to look at this schedule again: the next moment an interval completes.

    That is the next tick after `now` (the end of the interval in progress), or, before the
    first eligible interval has ended, that interval's end. None once nothing can become due
    any more: the interval starting at or before `end` has ended.
    """
    last_end = _last_eligible_end(schedule, end)
    if end is not None and (last_end is None or now >= last_end):
        return None
    if start is not None:
        first = _first_tick_at_or_after(schedule, start)
        if end is not None and first > end:
            return None
        first_end = schedule.next_tick(first)
        if first_end > now:
            return None if math.isinf(first_end) else first_end
    following = schedule.next_tick(now)
    return None if math.isinf(following) else following


def _last_eligible_end(schedule: Schedule, end: float | None) -> float | None:
    if end is None:
        return None
    last_start = schedule.tick_at_or_before(end)
    return None if last_start is None else schedule.next_tick(last_start)


def backfill_intervals(
    schedule: Schedule, *, start: float, end: float, limit: int = 10_000
) -> list[Interval]:
    """Every interval whose start lies in `[start, end]`, oldest first.

    Refuses (rather than truncates) a range with more than `limit` intervals, so a typo in a
    year does not quietly queue a century of runs.
    """
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ScheduleError(f"backfill limit must be a positive int; got {_describe(limit)}")
    if end < start:
        raise ScheduleError(f"backfill end {_iso(end)} is before its start {_iso(start)}")
    intervals: list[Interval] = []
    tick = _first_tick_at_or_after(schedule, start)
    while tick <= end:
        if len(intervals) == limit:
            raise ScheduleError(_backfill_too_long(schedule, intervals, start=start, end=end))
        intervals.append(Interval(tick, schedule.next_tick(tick)))
        tick = intervals[-1].end
    return intervals


def _backfill_too_long(
    schedule: Schedule, intervals: list[Interval], *, start: float, end: float
) -> str:
    # Counting them all could take millions of ticks; the ones seen give the density.
    average_length = (intervals[-1].end - intervals[0].start) / len(intervals)
    starts = round((end - intervals[0].start) / average_length) + 1
    estimate = max(len(intervals) + 1, starts)
    return (
        f"backfill of {schedule.description} from {_iso(start)} to {_iso(end)} covers about "
        f"{estimate:,} intervals, more than the limit of {len(intervals):,}; "
        "narrow the date range or raise the limit"
    )
