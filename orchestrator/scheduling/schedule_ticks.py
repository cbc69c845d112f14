"""Schedule ticks: which data intervals of a scheduled DAG are due, and when to look again.

A scheduled run covers one data interval `[logical_date, data_interval_end)` and starts once
that interval has ended, as in Airflow. Its dedup key names the interval, so a tick is never
run twice, whether the engine restarts mid-tick or `orchestrator backfill` covered it first.

Runs are created lazily: at most `max_active_runs` of a DAG's scheduled runs are unfinished
at once, so `catchup=True` with a start date a year ago queues a few runs at a time instead of
8,760 at once; the rest follow as those finish.
"""

from __future__ import annotations

from datetime import UTC, datetime

from orchestrator.authoring.dag import DAG
from orchestrator.authoring.intervals import (
    Interval,
    backfill_intervals,
    intervals_due,
    next_wakeup,
)


def interval_key(interval: Interval) -> str:
    """The dedup key of the run for `interval` (scheduled and backfill runs share it)."""
    return f"interval:{datetime.fromtimestamp(interval.start, UTC).isoformat()}"


class ScheduleTicks:
    """Per scheduled DAG: its latest interval with a run, and its unfinished scheduled runs."""

    def __init__(self) -> None:
        self.latest: dict[str, float] = {}  # dag_id -> start of its latest scheduled interval
        self.active: dict[str, set[str]] = {}  # dag_id -> its unfinished scheduled runs
        self.watched: dict[str, float] = {}  # dag_id -> when its schedule was first looked at

    def candidates(self, dag: DAG, now: float) -> list[Interval]:
        """The intervals the DAG may start runs for now (some may already have one)."""
        schedule = dag.starts.schedule
        if schedule is None:
            return []
        room = dag.max_active_runs - len(self.active.get(dag.dag_id, ()))
        if room <= 0:
            return []  # looked at again when one of its scheduled runs ends
        return intervals_due(
            schedule,
            now=now,
            after=self.latest.get(dag.dag_id),
            start=dag.starts.start,
            end=dag.starts.end,
            catchup=dag.starts.catchup,
            limit=room,
            watched_since=self.watched.setdefault(dag.dag_id, now),
        )

    def started(self, dag_id: str, interval: Interval, run_id: str | None) -> None:
        """The interval has a run now (`run_id`, or one made earlier when None)."""
        self.latest[dag_id] = max(self.latest.get(dag_id, interval.start), interval.start)
        if run_id is not None:
            self.active.setdefault(dag_id, set()).add(run_id)

    def ended(self, dag_id: str, run_id: str) -> bool:
        """A run ended; True if it was one of the DAG's scheduled runs (room for the next)."""
        runs = self.active.get(dag_id)
        if runs is None or run_id not in runs:
            return False
        runs.discard(run_id)
        return True

    def next_look(self, dag: DAG, now: float) -> float | None:
        """When the DAG's next interval ends (None: never, past its end date)."""
        schedule = dag.starts.schedule
        if schedule is None:
            return None
        return next_wakeup(schedule, now=now, end=dag.starts.end, start=dag.starts.start)


def backfill(dag: DAG, start: float, end: float) -> list[Interval]:
    """The intervals a backfill from `start` to `end` (inclusive) covers."""
    if dag.starts.schedule is None:
        from orchestrator.authoring.schedules import ScheduleError

        raise ScheduleError(
            f"DAG {dag.dag_id!r} has no schedule, so it has no intervals to backfill; "
            "give it one (schedule='@daily', ...) or start runs with `orchestrator trigger`"
        )
    return backfill_intervals(dag.starts.schedule, start=start, end=end)
