"""Moments: a user's start_date / end_date (or the CLI's --start / --end) as epoch seconds.

Users write a point in time as a datetime, a date, an ISO-8601 string or epoch seconds; the
scheduler compares float seconds since the epoch (UTC). Reading them in one place, with naive
values in the DAG's timezone, gives every caller the same rules and the same error messages.
"""

from __future__ import annotations

import math
from datetime import date, datetime, time

from orchestrator.authoring.schedules import ScheduleError, describe_value, load_timezone

# 10000-01-01T00:00:00Z: the first moment `datetime` cannot show.
_END_OF_TIME = 253_402_300_800.0


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
        f"'2024-01-31T03:00:00+01:00') or epoch seconds; got {describe_value(value)}"
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
