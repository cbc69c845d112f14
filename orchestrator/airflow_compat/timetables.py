"""Airflow's timetables, and the `schedule=` argument as a whole, on the native schedules.

| Airflow | native |
|---|---|
| `CronDataIntervalTimetable(cron, timezone)`, a cron string | `CronSchedule` |
| `DeltaDataIntervalTimetable(delta)`, a timedelta | `TimedeltaSchedule` anchored at start_date |
| `CronTriggerTimetable(cron, timezone=, interval=, ...)` | `TriggerSchedule(CronSchedule)` |
| `DeltaTriggerTimetable(delta, interval=)` | `TriggerSchedule(TimedeltaSchedule)` |
| `MultipleCronTriggerTimetable(*crons, timezone=, ...)` | `TriggerSchedule(CronUnion)` |
| `EventsTimetable(event_dates, ...)` | `TriggerSchedule(FixedMoments)` |
| `NullTimetable()`, `OnceTimetable()` | no schedule, `@once` |
| `AssetOrTimeSchedule(timetable=, assets=)` | its timetable's schedule, and `run_on` the assets |

A trigger timetable's run starts at its tick and covers `[tick - interval, tick]` (zero long by
default), its logical date the start of that; a data-interval one's starts when its interval
ends, as Airflow documents. A `Timetable` subclass of one's own is refused where it is defined:
its Python methods cannot be mapped onto the engine's schedules.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta
from typing import Any

from orchestrator.airflow_compat.assets import split_assets
from orchestrator.authoring.assets import AssetCondition
from orchestrator.authoring.moments import parse_moment
from orchestrator.authoring.schedules import (
    CronSchedule,
    Schedule,
    ScheduleError,
    TimedeltaSchedule,
    describe_value,
    parse_schedule,
)
from orchestrator.authoring.trigger_schedules import CronUnion, FixedMoments, TriggerSchedule

#: What `split_schedule` gives the DAG: a cron, preset or timedelta, or a timetable to build.
Spelling = str | timedelta | None


class Timetable:
    """Airflow's timetable base class: the built-in timetables below are supported."""

    description: str = ""
    #: The native schedule, for the timetables that need no start date to build it.
    _schedule: Schedule
    #: How long before the moment it was queued a manual run's data interval starts.
    _manual_lag: float = 0.0

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.__module__ != __name__:
            raise TypeError(
                f"custom timetable {cls.__name__!r} is not supported: orchestrator maps Airflow's "
                "built-in timetables onto its own schedules (CronTriggerTimetable, "
                "CronDataIntervalTimetable, DeltaTriggerTimetable, DeltaDataIntervalTimetable, "
                "MultipleCronTriggerTimetable, EventsTimetable, AssetOrTimeSchedule) but cannot "
                "run a timetable's own Python; express the schedule with one of those"
            )

    @property
    def summary(self) -> str:
        return self.description

    def split(self) -> tuple[Timetable | Spelling, AssetCondition | None]:
        """What the DAG runs on: this timetable (or a simpler spelling), and assets."""
        return self, None

    def native(self, *, start: float | None) -> Schedule:
        """The native schedule; `start` (the DAG's start_date) anchors delta ticks."""
        return self._schedule

    def manual_interval(self, queued: float) -> tuple[float, float]:
        """A manual run's data interval (Airflow's `infer_manual_data_interval`)."""
        return queued - self._manual_lag, queued


class CronDataIntervalTimetable(Timetable):
    """A run when each interval between two cron ticks ends (a cron string's meaning)."""

    def __init__(self, cron: str, timezone: Any) -> None:
        self._schedule = _cron(cron, timezone)
        self.description = cron


class CronTriggerTimetable(Timetable):
    """A run at each cron tick, covering the `interval` before it (zero long by default)."""

    def __init__(
        self,
        cron: str,
        *,
        timezone: Any,
        interval: timedelta = timedelta(),
        run_immediately: bool | timedelta = False,
    ) -> None:
        self._schedule = _trigger(_cron(cron, timezone), interval, run_immediately)
        self._manual_lag = self._schedule.interval
        self.description = cron


class MultipleCronTriggerTimetable(Timetable):
    """A run at each tick of any of the crons (CronTriggerTimetable's rules otherwise)."""

    def __init__(
        self,
        *crons: str,
        timezone: Any,
        interval: timedelta = timedelta(),
        run_immediately: bool | timedelta = False,
    ) -> None:
        union = CronUnion(tuple(_cron(cron, timezone) for cron in crons))
        self._schedule = _trigger(union, interval, run_immediately)
        self._manual_lag = self._schedule.interval
        self.description = ", ".join(crons)


class DeltaDataIntervalTimetable(Timetable):
    """A run after each `delta` since the start date (a timedelta schedule's meaning)."""

    def __init__(self, delta: timedelta) -> None:
        self.delta = _timedelta(delta, "delta")
        TimedeltaSchedule(self.delta)  # a delta under a second is refused here, at its line
        self.description = str(delta)

    def native(self, *, start: float | None) -> Schedule:
        return parse_schedule(self.delta, anchor=start)


class DeltaTriggerTimetable(DeltaDataIntervalTimetable):
    """A run every `delta` from the start date, covering the `interval` before it."""

    def __init__(self, delta: timedelta, *, interval: timedelta = timedelta()) -> None:
        super().__init__(delta)
        checked = _trigger(TimedeltaSchedule(self.delta), interval, False)  # here, at its line
        self.interval = interval
        self._manual_lag = checked.interval

    def native(self, *, start: float | None) -> Schedule:
        return _trigger(super().native(start=start), self.interval, False)


class EventsTimetable(Timetable):
    """A run at each of `event_dates` (an empty interval at each); duplicates run once.

    A manual run covers the moment it was queued, or with `restrict_to_events` the latest
    event (the first one before any); `presorted` changes nothing.
    """

    def __init__(
        self,
        event_dates: Iterable[Any],
        restrict_to_events: bool = False,
        presorted: bool = False,
        description: str | None = None,
    ) -> None:
        self.event_dates = sorted(event_dates)
        moments = tuple(_moment(date) for date in self.event_dates)
        self._moments = FixedMoments(moments, description)
        self._schedule = TriggerSchedule(self._moments, run_immediately=True)
        self.restrict_to_events = restrict_to_events
        count = len(self.event_dates)
        first, last = self.event_dates[0], self.event_dates[-1]
        self.description = description or f"{count} Events between {first} and {last}"
        self._summary = description or f"{count} Events"

    @property
    def summary(self) -> str:
        return self._summary

    def manual_interval(self, queued: float) -> tuple[float, float]:
        """Restricted to events, a manual run covers the latest event (or the first one)."""
        if not self.restrict_to_events:
            return super().manual_interval(queued)
        event = self._moments.tick_at_or_before(queued)
        event = self._moments.next_tick(queued) if event is None else event
        return event, event


class NullTimetable(Timetable):
    """No schedule: runs start by hand (or from assets)."""

    description = "Never, external triggers only"

    def split(self) -> tuple[Timetable | Spelling, AssetCondition | None]:
        return None, None


class OnceTimetable(Timetable):
    """`@once`: one run, at the start date."""

    description = "Once, as soon as possible"

    def split(self) -> tuple[Timetable | Spelling, AssetCondition | None]:
        return "@once", None


class AssetOrTimeSchedule(Timetable):
    """Runs on `timetable` and on updates of `assets` too (each start is its own run)."""

    def __init__(self, *, timetable: Timetable, assets: Any = None, **kwargs: Any) -> None:
        if not isinstance(timetable, Timetable):
            raise TypeError(
                f"AssetOrTimeSchedule's timetable must be a timetable, got {timetable!r}"
            )
        given = kwargs.pop("datasets", assets)  # Airflow 2's DatasetOrTimeSchedule
        if kwargs:
            raise TypeError(f"AssetOrTimeSchedule got unexpected arguments {sorted(kwargs)}")
        self.timetable = timetable
        self.condition = split_assets(given)
        self.description = f"{timetable.description} or assets"

    def split(self) -> tuple[Timetable | Spelling, AssetCondition | None]:
        return self.timetable.split()[0], self.condition

    def manual_interval(self, queued: float) -> tuple[float, float]:
        return self.timetable.manual_interval(queued)


DatasetOrTimeSchedule = AssetOrTimeSchedule


def split_schedule(schedule: Any) -> tuple[Timetable | Spelling, AssetCondition | None]:
    """An Airflow schedule as (a cron, preset, timedelta or timetable; the assets that start runs).

    A list of assets is Airflow's AND: a run once every one of them was updated.
    """
    if isinstance(schedule, Timetable):
        return schedule.split()
    if schedule is None or isinstance(schedule, str | timedelta):
        if schedule == "@continuous":
            raise ValueError("schedule='@continuous' is not supported; use a cron or timedelta")
        return schedule, None
    condition = split_assets(schedule, strict=False)
    if condition is not None:
        return None, condition
    raise TypeError(
        f"schedule {schedule!r} is not supported: use None, a cron string or preset "
        "('@daily', '@once'), a timedelta, assets, or one of Airflow's built-in timetables"
    )


def zone_name(zone: Any, *, fallback: str | None = None) -> str:
    """An IANA name for a timezone given as a name, a pendulum or zoneinfo zone; UTC for UTC.

    A zone without a name (a fixed offset) is an error, or `fallback` when one is given.
    """
    if isinstance(zone, str):
        return zone
    name = getattr(zone, "name", None) or getattr(zone, "key", None)
    if isinstance(name, str) and name not in ("+00:00", "UTC+00:00"):
        return name
    if zone is None or name in ("+00:00", "UTC+00:00") or str(zone) in ("UTC", "UTC+00:00"):
        return "UTC"
    if fallback is not None:
        return fallback
    raise ScheduleError(
        f"timezone must be an IANA name like 'Europe/Paris' or its zone; got {describe_value(zone)}"
    )


def _cron(cron: str, timezone: Any) -> CronSchedule:
    if not isinstance(cron, str):
        raise ScheduleError(f"a timetable's cron must be a string; got {describe_value(cron)}")
    schedule = parse_schedule(cron, timezone=zone_name(timezone))
    if not isinstance(schedule, CronSchedule):  # a string always parses to one
        raise ScheduleError(f"a timetable's cron must be a cron expression; got {schedule}")
    return schedule


def _trigger(ticks: Schedule, interval: Any, run_immediately: Any) -> TriggerSchedule:
    window = run_immediately
    if isinstance(window, timedelta):
        window = window.total_seconds()
    seconds = _timedelta(interval, "interval").total_seconds()
    return TriggerSchedule(ticks, interval=seconds, run_immediately=window)


def _timedelta(value: Any, what: str) -> timedelta:
    if not isinstance(value, timedelta):
        raise ScheduleError(
            f"a timetable's {what} must be a datetime.timedelta (a relativedelta is not "
            f"supported: use a cron for calendar months); got {describe_value(value)}"
        )
    return value


def _moment(value: Any) -> float:
    moment = parse_moment(value, timezone="UTC", what="an EventsTimetable date")
    if moment is None:
        raise ScheduleError("EventsTimetable's event_dates must be datetimes, not None")
    return moment


__all__ = (
    "AssetOrTimeSchedule",
    "CronDataIntervalTimetable",
    "CronTriggerTimetable",
    "DatasetOrTimeSchedule",
    "DeltaDataIntervalTimetable",
    "DeltaTriggerTimetable",
    "EventsTimetable",
    "MultipleCronTriggerTimetable",
    "NullTimetable",
    "OnceTimetable",
    "Timetable",
)
