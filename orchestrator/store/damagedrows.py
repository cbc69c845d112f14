"""`orchestrator db check`'s look at every JSON value: which rows a reader shows as damaged.

Each table is read through the same row decoder its listings use, so the check names exactly
the rows that listings mark damaged, with the table, the row's key and the column. Results
have no shape to check and may be large, so SQLite's `json_valid` finds theirs without
loading them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from orchestrator.store.apirows import WEBHOOK_COLUMNS, webhook_from_row
from orchestrator.store.rows import (
    RUN_COLUMNS,
    TASK_INSTANCE_COLUMNS,
    Row,
    run_from_row,
    task_instance_from_row,
)
from orchestrator.store.waitrows import (
    EVENT_COLUMNS,
    RUN_SOURCE_COLUMNS,
    TRIGGER_COLUMNS,
    event_from_row,
    run_source_from_row,
    trigger_from_row,
)

Fetch = Callable[[str], Awaitable[list[Any]]]


@dataclass(frozen=True)
class _CheckedTable:
    """A table with JSON columns: how to read its rows, and which fields make a row's key."""

    table: str
    columns: str
    decode: Callable[[Row], Any]
    key: tuple[str, ...]
    where: str = "1"


_TABLES = (
    _CheckedTable("runs", RUN_COLUMNS, run_from_row, ("run_id",)),
    _CheckedTable(
        "task_instances",
        TASK_INSTANCE_COLUMNS,
        task_instance_from_row,
        ("run_id", "task_id", "map_index"),
        where="next_call IS NOT NULL",
    ),
    _CheckedTable(
        "triggers", TRIGGER_COLUMNS, trigger_from_row, ("run_id", "task_id", "map_index")
    ),
    _CheckedTable("events", EVENT_COLUMNS, event_from_row, ("event_id",)),
    _CheckedTable("run_sources", RUN_SOURCE_COLUMNS, run_source_from_row, ("dag_id", "source")),
    _CheckedTable("webhooks", WEBHOOK_COLUMNS, webhook_from_row, ("name",)),
)

_BAD_RESULTS = (
    "SELECT run_id, task_id, map_index FROM task_results WHERE NOT json_valid(value) ORDER BY rowid"
)


def row_key(fields: dict[str, Any]) -> str:
    """`run_id='r1', task_id='t', map_index=-1`: a row named the way a user looks it up."""
    return ", ".join(f"{name}={value!r}" for name, value in fields.items())


async def find_damaged_rows(fetch: Fetch) -> list[str]:
    """`table (key): why` for each row a listing would show as damaged."""
    problems: list[str] = []
    for checked in _TABLES:
        sql = f"SELECT {checked.columns} FROM {checked.table} WHERE {checked.where} ORDER BY rowid"
        for row in await fetch(sql):
            record = checked.decode(row)
            if record.damaged is not None:
                key = row_key({name: getattr(record, name) for name in checked.key})
                problems.append(f"{checked.table} ({key}): {record.damaged}")
    for run_id, task_id, map_index in await fetch(_BAD_RESULTS):
        key = row_key({"run_id": run_id, "task_id": task_id, "map_index": map_index})
        problems.append(f"task_results ({key}): value is not valid JSON")
    return problems
