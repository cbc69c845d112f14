"""Airflow's `macros`: date helpers and the modules templates reach through `macros.`."""

from __future__ import annotations

import datetime as _datetime_module
import json
import random
import time
import uuid
from datetime import timedelta
from typing import Any

datetime = _datetime_module.datetime
date = _datetime_module.date


def ds_add(ds: str, days: int) -> str:
    """`ds` (YYYY-MM-DD) moved by `days`: `ds_add('2015-01-06', -5)` is '2015-01-01'."""
    if not days:
        return str(ds)
    moment = datetime.strptime(str(ds), "%Y-%m-%d") + timedelta(days=days)
    return moment.strftime("%Y-%m-%d")


def ds_format(ds: str, input_format: str, output_format: str) -> str:
    """`ds` read with `input_format` and written with `output_format`."""
    return datetime.strptime(str(ds), input_format).strftime(output_format)


def days_ago(n: int, hour: int = 0, minute: int = 0, second: int = 0) -> Any:
    """Midnight UTC `n` days ago (Airflow 2's `airflow.utils.dates.days_ago`)."""
    today = datetime.now(_datetime_module.UTC).replace(
        hour=hour, minute=minute, second=second, microsecond=0
    )
    return today - timedelta(days=n)


__all__ = (
    "date",
    "datetime",
    "days_ago",
    "ds_add",
    "ds_format",
    "json",
    "random",
    "time",
    "timedelta",
    "uuid",
)
