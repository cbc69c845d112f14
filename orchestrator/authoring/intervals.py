"""Intervals: the data intervals of a schedule that are due, when to look again, and backfills.

Interval k is `[tick_k, tick_k+1)` of a `Schedule`, and its run is due once its end has passed
(like Airflow's data intervals); a trigger schedule's interval is the stretch before each of its
ticks, its run due at the tick (`trigger_schedules.py`). Everything here is pure and
synchronous: times are float seconds since the epoch (UTC), `now` is an argument, and the
scheduler decides what to do with the answers. Working out the latest interval walks back from
`now`, so a start date ten years ago costs a handful of ticks, not 87,600.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from orchestrator.authoring.schedules import Schedule, ScheduleError, describe_value, format_moment


@dataclass(frozen=True)
class Interval:
    """A data interval `[start, end)`: the slice of time one scheduled run covers."""

    start: float
    end: float


def intervals_due(
    schedule: Schedule,
    *,
    now: float,
    after: float | None,
    start: float | None,
    end: float | None,
    catchup: bool | int,
    limit: int,
    watched_since: float | None = None,
) -> list[Interval]:
    """The complete intervals that have no run yet, oldest first, at most `limit` of them.

    `after` is the start of the latest interval that has a run. An interval is eligible when
    its start is >= `start` and <= `end` (end_date includes the interval starting at it).
    catchup False: only the latest complete interval (ticks missed while down fire once);
    True: every eligible interval since `after` or `start` (with neither, only the latest);
    N: the latest N of those. The work is O(result + a few ticks): it walks back from `now`.
    `watched_since`, when the scheduler began watching a DAG that never ran, lets a schedule
    skip an interval that came due before it (`Schedule.runs_when_late`, catchup off).
    """
    depth = _catchup_depth(catchup)
    start, end = _bound(schedule, start), _bound(schedule, end)
    latest = _latest_complete_start(schedule, now=now, end=end)
    if limit <= 0 or latest is None or not _is_eligible(latest, after=after, start=start):
        return []
    if depth is None and (after is not None or start is not None):
        first = _first_eligible_start(schedule, after=after, start=start)
        return _walk_forward(schedule, first=first, last=latest, limit=limit)
    if after is None and watched_since is not None:
        if not schedule.runs_when_late(schedule.interval_end(latest), since=watched_since):
            return []
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
        f"intervals to run); got {describe_value(catchup)}"
    )


def _bound(schedule: Schedule, moment: float | None) -> float | None:
    """A start or end date as a bound on the ticks (interval starts) of `schedule`."""
    return None if moment is None else moment - schedule.lag


def _latest_complete_start(schedule: Schedule, *, now: float, end: float | None) -> float | None:
    """The start of the newest interval that has ended by `now` and starts at or before `end`."""
    latest = schedule.latest_ended_start(now)
    if latest is not None and end is not None and latest > end:
        # It ends no later than the one starting at `latest`, which has ended: complete too.
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
        intervals.append(Interval(tick, schedule.interval_end(tick)))
        tick = _next_start(schedule, intervals[-1])
    return intervals


def _next_start(schedule: Schedule, interval: Interval) -> float:
    return interval.end if schedule.intervals_adjoin else schedule.next_tick(interval.start)


def _walk_back(
    schedule: Schedule, latest: float, *, after: float | None, start: float | None, depth: int
) -> list[Interval]:
    """The `depth` newest eligible intervals ending with the one at `latest`, oldest first."""
    intervals = [Interval(latest, schedule.interval_end(latest))]
    while len(intervals) < depth:
        earlier = _tick_before(schedule, intervals[-1].start)
        if earlier is None or not _is_eligible(earlier, after=after, start=start):
            break
        end = intervals[-1].start if schedule.intervals_adjoin else schedule.interval_end(earlier)
        intervals.append(Interval(earlier, end))
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
    start, end = _bound(schedule, start), _bound(schedule, end)
    last_end = _last_eligible_end(schedule, end)
    if end is not None and (last_end is None or now >= last_end):
        return None
    if start is not None:
        first = _first_tick_at_or_after(schedule, start)
        if end is not None and first > end:
            return None
        first_end = schedule.interval_end(first)
        if first_end > now:
            return None if math.isinf(first_end) else first_end
    following = schedule.next_due(now)
    return None if math.isinf(following) else following


def _last_eligible_end(schedule: Schedule, end: float | None) -> float | None:
    if end is None:
        return None
    last_start = schedule.tick_at_or_before(end)
    return None if last_start is None else schedule.interval_end(last_start)


def backfill_intervals(
    schedule: Schedule, *, start: float, end: float, limit: int = 10_000
) -> list[Interval]:
    """Every interval whose start lies in `[start, end]`, oldest first.

    Refuses (rather than truncates) a range with more than `limit` intervals, so a typo in a
    year does not quietly queue a century of runs.
    """
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ScheduleError(f"backfill limit must be a positive int; got {describe_value(limit)}")
    if end < start:
        raise ScheduleError(
            f"backfill end {format_moment(end)} is before its start {format_moment(start)}"
        )
    intervals: list[Interval] = []
    tick = _first_tick_at_or_after(schedule, start - schedule.lag)
    while tick <= end - schedule.lag:
        if len(intervals) == limit:
            raise ScheduleError(_backfill_too_long(schedule, intervals, start=start, end=end))
        intervals.append(Interval(tick, schedule.interval_end(tick)))
        tick = _next_start(schedule, intervals[-1])
    return intervals


def _backfill_too_long(
    schedule: Schedule, intervals: list[Interval], *, start: float, end: float
) -> str:
    # Counting them all could take millions of ticks; the ones seen give the density.
    average_step = (schedule.next_tick(intervals[-1].start) - intervals[0].start) / len(intervals)
    starts = round((end - schedule.lag - intervals[0].start) / average_step) + 1
    estimate = max(len(intervals) + 1, starts)
    return (
        f"backfill of {schedule.description} from {format_moment(start)} to {format_moment(end)} "
        f"covers about {estimate:,} intervals, more than the limit of {len(intervals):,}; "
        "narrow the date range or raise the limit"
    )
