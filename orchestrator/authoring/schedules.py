"""Schedules: the cron strings, presets and timedeltas that say when a DAG runs, as ticks.

A schedule is a sequence of *ticks*; consecutive ticks bound the data intervals (`intervals`
works out which are due). Three spellings build one:

- a cron string, `"0 3 * * *"`, evaluated in the local time of an IANA `timezone` with Debian
  cron's DST rules (via `cronsim`): a 02:30 job runs once on both DST nights;
- a preset, `"@daily"` (also @hourly @midnight @weekly @monthly @yearly @annually);
- a `timedelta`, anchored at the start date (or the Unix epoch) so ticks survive restarts.

Each spelling is checked when the DAG is defined and a mistake is named precisely (the cron field
and what it takes, the closest timezone or preset). Times are float seconds since the epoch (UTC).
"""

from __future__ import annotations

import difflib
import math
import re
import zoneinfo
from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo

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
_ACCEPTED_SCHEDULES = (
    "a cron string ('0 3 * * *'), a preset ('@daily') or a datetime.timedelta (timedelta(hours=1))"
)


class ScheduleError(DagError):
    """A schedule, timezone, start/end date or catchup value that cannot be used."""


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

    # A data interval runs from one tick to the next and its run comes due at its end. A
    # trigger schedule (trigger_schedules.py) overrides the four below: its runs come due at
    # its ticks, each covering a fixed stretch of time before it.

    @property
    def lag(self) -> float:
        """How long before its run comes due an interval starts, when that is fixed (a trigger
        schedule's `interval`); start_date and end_date bound the moments runs come due then."""
        return 0.0

    @property
    def intervals_adjoin(self) -> bool:
        """True when each interval ends where the next starts (no next tick to work out)."""
        return True

    def interval_end(self, tick: float) -> float:
        """The end of the data interval starting at `tick`, when its run comes due."""
        return self.next_tick(tick)

    def latest_ended_start(self, moment: float) -> float | None:
        """The start of the newest interval that has ended by `moment`; None if none has."""
        boundary = self.tick_at_or_before(moment)
        return None if boundary is None else self.tick_at_or_before(_just_before(boundary))

    def next_due(self, moment: float) -> float:
        """The first moment after `moment` at which an interval ends; `math.inf` if none."""
        return self.next_tick(moment)

    def runs_when_late(self, due: float, *, since: float) -> bool:
        """Whether a DAG that has never run, watched from `since`, runs (catchup off) for an
        interval that came due at `due`: Airflow's data intervals do, run at once."""
        return True

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
        raise ScheduleError(f"{self.description}: no tick found after {format_moment(moment)}")

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
        raise ScheduleError(f"{self.description}: no tick found before {format_moment(moment)}")

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
    value: str | timedelta | Schedule, *, timezone: str = "UTC", anchor: float | None = None
) -> Schedule:
    """Build the schedule a DAG asked for, or say precisely what is wrong with it.

    `anchor` (the start date) only matters for a timedelta; cron ticks are fixed by the clock.
    A `Schedule` built already (a trigger schedule, ...) is taken as it is.
    """
    if isinstance(value, Schedule):
        return value
    if isinstance(value, timedelta):
        load_timezone(timezone)  # unused by elapsed-time ticks, but a typo is still a typo
        _check_anchor(anchor)
        return TimedeltaSchedule(every=value, anchor=0.0 if anchor is None else anchor)
    if not isinstance(value, str):
        raise ScheduleError(f"schedule must be {_ACCEPTED_SCHEDULES}; got {describe_value(value)}")
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


def _just_before(moment: float) -> float:
    return math.nextafter(moment, -math.inf)


def describe_value(value: object) -> str:
    """A wrong value as error messages show it: its type, then its repr ("str '5'")."""
    return f"{type(value).__name__} {value!r}"


def format_moment(moment: float) -> str:
    """Epoch seconds as ISO-8601 UTC for a message; the bare number when `datetime` cannot."""
    try:
        return datetime.fromtimestamp(moment, UTC).isoformat()
    except (OverflowError, ValueError, OSError):
        return repr(moment)
