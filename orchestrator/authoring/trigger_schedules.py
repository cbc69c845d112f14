"""Trigger schedules: a run *at* each tick, like cron, instead of one after each interval ends.

A plain schedule's run covers the interval from one tick to the next and starts when it ends
(Airflow's data-interval timetables). A `TriggerSchedule` starts a run at each tick of the
schedule it wraps, covering the fixed `interval` before it (zero by default), as Airflow's
trigger timetables do:

```python
TriggerSchedule(CronSchedule("0 3 * * *"))                  # at 03:00, interval [03:00, 03:00]
TriggerSchedule(CronSchedule("0 3 * * *"), interval=86400)  # at 03:00, the day before it
TriggerSchedule(CronUnion((CronSchedule("0 3 * * 1-5"), CronSchedule("0 9 * * 0,6"))))
TriggerSchedule(FixedMoments((t1, t2, t3)), run_immediately=True)
```

Its ticks, as the interval code sees them, are the intervals' starts (each trigger moment less
`interval`), so a run's logical date is its interval's start here too and catchup, end dates
and backfills work unchanged.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass
from datetime import timedelta

from orchestrator.authoring.schedules import (
    CronSchedule,
    Schedule,
    ScheduleError,
    describe_value,
    format_moment,
)


@dataclass(frozen=True)
class TriggerSchedule(Schedule):
    """A run at each tick of `moments`, covering the `interval` seconds before it.

    `run_immediately` matters only for a DAG that never ran, with catchup off: False (the
    default, as Airflow) waits for the first tick after the DAG is watched, True runs the
    latest tick that passed, N seconds runs it if it passed at most N seconds before.
    """

    moments: Schedule
    interval: float = 0.0
    run_immediately: bool | float = False

    def __post_init__(self) -> None:
        if not isinstance(self.moments, Schedule) or isinstance(self.moments, TriggerSchedule):
            raise ScheduleError(
                f"a trigger schedule runs at the ticks of a schedule, got {self.moments!r}"
            )
        if isinstance(self.interval, bool) or not (
            isinstance(self.interval, int | float) and 0 <= self.interval < math.inf
        ):
            raise ScheduleError(
                "a trigger schedule's interval must be seconds >= 0; "
                f"got {describe_value(self.interval)}"
            )
        window = self.run_immediately
        if not isinstance(window, bool) and not (isinstance(window, int | float) and window >= 0):
            raise ScheduleError(
                f"run_immediately must be True, False or seconds >= 0; got {describe_value(window)}"
            )

    @property
    def description(self) -> str:
        covering = (
            f" covering the {timedelta(seconds=self.interval)} before it" if self.interval else ""
        )
        return f"{self.moments.description}, a run at each tick{covering}"

    @property
    def lag(self) -> float:
        return float(self.interval)

    def next_tick(self, moment: float) -> float:
        return self.moments.next_tick(moment + self.interval) - self.interval

    def tick_at_or_before(self, moment: float) -> float | None:
        tick = self.moments.tick_at_or_before(moment + self.interval)
        return None if tick is None else tick - self.interval

    @property
    def intervals_adjoin(self) -> bool:
        return False

    def interval_end(self, tick: float) -> float:
        return tick + self.interval

    def latest_ended_start(self, moment: float) -> float | None:
        return self.tick_at_or_before(moment - self.interval)

    def next_due(self, moment: float) -> float:
        return self.moments.next_tick(moment)

    def runs_when_late(self, due: float, *, since: float) -> bool:
        if self.run_immediately is True or due >= since:
            return True
        return self.run_immediately is not False and since - due <= self.run_immediately


@dataclass(frozen=True)
class FixedMoments(Schedule):
    """Ticks at a fixed list of moments (Airflow's `EventsTimetable`), sorted, once each."""

    moments: tuple[float, ...]
    name: str | None = None

    def __post_init__(self) -> None:
        if not self.moments or not all(
            isinstance(m, int | float) and not isinstance(m, bool) and math.isfinite(m)
            for m in self.moments
        ):
            raise ScheduleError(
                "a list of moments needs at least one, each seconds since the epoch; "
                f"got {self.moments!r}"
            )
        object.__setattr__(self, "moments", tuple(sorted(set(self.moments))))

    @property
    def description(self) -> str:
        if self.name is not None:
            return self.name
        first, last = (format_moment(m) for m in (self.moments[0], self.moments[-1]))
        return f"{len(self.moments)} moments from {first} to {last}"

    def next_tick(self, moment: float) -> float:
        index = bisect.bisect_right(self.moments, moment)
        return self.moments[index] if index < len(self.moments) else math.inf

    def tick_at_or_before(self, moment: float) -> float | None:
        index = bisect.bisect_right(self.moments, moment)
        return self.moments[index - 1] if index else None


@dataclass(frozen=True)
class CronUnion(Schedule):
    """The ticks of several crons, merged (Airflow's `MultipleCronTriggerTimetable`)."""

    crons: tuple[CronSchedule, ...]

    def __post_init__(self) -> None:
        if not self.crons or not all(isinstance(c, CronSchedule) for c in self.crons):
            raise ScheduleError(f"a union of crons needs at least one cron; got {self.crons!r}")

    @property
    def description(self) -> str:
        return " or ".join(cron.description for cron in self.crons)

    def next_tick(self, moment: float) -> float:
        return min(cron.next_tick(moment) for cron in self.crons)

    def tick_at_or_before(self, moment: float) -> float | None:
        found = [
            tick for cron in self.crons if (tick := cron.tick_at_or_before(moment)) is not None
        ]
        return max(found, default=None)
