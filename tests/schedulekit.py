"""Schedules read with ISO times: shared by the schedule tests (importable as `schedulekit`)."""

from __future__ import annotations

from datetime import UTC, datetime, tzinfo

from orchestrator.authoring.intervals import Interval, intervals_due
from orchestrator.authoring.schedules import Schedule, parse_schedule


def at(text: str, zone: tzinfo | None = None) -> float:
    """Seconds since the epoch of an ISO time; naive text is UTC unless a zone is given."""
    moment = datetime.fromisoformat(text)
    return moment.replace(tzinfo=moment.tzinfo or zone or UTC).timestamp()


def due(
    schedule: Schedule | str,
    now: str,
    *,
    after: str | None = None,
    start: str | None = None,
    end: str | None = None,
    catchup: bool | int = False,
    limit: int = 100,
    since: str | None = None,
) -> list[Interval]:
    """`intervals_due` with UTC ISO times, and the arguments a test does not care about unset."""
    return intervals_due(
        parse_schedule(schedule) if isinstance(schedule, str) else schedule,
        now=at(now),
        after=None if after is None else at(after),
        start=None if start is None else at(start),
        end=None if end is None else at(end),
        catchup=catchup,
        limit=limit,
        watched_since=None if since is None else at(since),
    )
