"""How the writes of run triggers become SQL: pauses, events, and the DAGs' run triggers.

Kept apart from `writes.py` (task and run state) because these rows belong to DAGs, not runs;
`writes.apply_op` finds these handlers through `EVENT_HANDLERS`.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Any

from orchestrator.errors import DagNotFoundError, StoreError
from orchestrator.store.records import EventRecord, RunSourceRecord
from orchestrator.store.rows import encode_json
from orchestrator.store.waitrows import (
    EVENT_COLUMNS,
    RUN_SOURCE_COLUMNS,
    event_params,
    run_source_params,
)

Connection = sqlite3.Connection

_INSERT_EVENT = f"INSERT INTO events ({EVENT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)"
# The same trigger (same description and arguments) keeps its cursor; a changed one starts over.
_PUT_SOURCE = f"""
    INSERT INTO run_sources ({RUN_SOURCE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)
    ON CONFLICT (dag_id, source) DO UPDATE SET
        armed_at = excluded.armed_at, error = excluded.error,
        cursor = CASE WHEN run_sources.kwargs = excluded.kwargs
                      AND run_sources.classpath = excluded.classpath
                 THEN run_sources.cursor ELSE excluded.cursor END,
        classpath = excluded.classpath, kwargs = excluded.kwargs
"""


def _set_dag_paused(connection: Connection, dag_id: str, paused: bool) -> None:
    sql = "UPDATE dags SET is_paused = ? WHERE dag_id = ?"
    cursor = connection.execute(sql, (int(paused), dag_id))
    if cursor.rowcount != 1:
        raise DagNotFoundError(f"there is no DAG {dag_id!r} in the store to pause or unpause")


def _add_events(connection: Connection, events: list[EventRecord]) -> None:
    try:
        connection.executemany(_INSERT_EVENT, [event_params(event) for event in events])
    except sqlite3.IntegrityError as error:
        raise StoreError(
            f"an event was recorded twice ({error}); the batch was not applied, so no run "
            "was created for it a second time"
        ) from error


def _assign_events(connection: Connection, dag_id: str, dedup_keys: list[str], run_id: str) -> None:
    sql = "UPDATE events SET run_id = ? WHERE dag_id = ? AND dedup_key = ? AND run_id IS NULL"
    params = [(run_id, dag_id, key) for key in dedup_keys]
    cursor = connection.executemany(sql, params)
    if cursor.rowcount != len(dedup_keys):
        raise StoreError(
            f"run {run_id} of DAG {dag_id} claimed {len(dedup_keys)} waiting events but only "
            f"{cursor.rowcount} were waiting; the batch was not applied"
        )


def _put_run_source(connection: Connection, source: RunSourceRecord) -> None:
    connection.execute(_PUT_SOURCE, run_source_params(source))


def _delete_run_sources(connection: Connection, dag_id: str, keep: list[str]) -> None:
    marks = ", ".join("?" for _ in keep)
    sql = f"DELETE FROM run_sources WHERE dag_id = ? AND source NOT IN ({marks})"
    connection.execute(sql, (dag_id, *keep))


def _save_source_cursor(connection: Connection, dag_id: str, source: str, cursor: Any) -> None:
    text = encode_json(cursor, what="a run trigger's cursor")
    sql = "UPDATE run_sources SET cursor = ? WHERE dag_id = ? AND source = ?"
    connection.execute(sql, (text, dag_id, source))


def _set_source_error(connection: Connection, dag_id: str, source: str, error: str | None) -> None:
    sql = "UPDATE run_sources SET error = ? WHERE dag_id = ? AND source = ?"
    connection.execute(sql, (error, dag_id, source))


EVENT_HANDLERS: dict[str, Callable[..., None]] = {
    "set_dag_paused": _set_dag_paused,
    "add_events": _add_events,
    "assign_events": _assign_events,
    "put_run_source": _put_run_source,
    "delete_run_sources": _delete_run_sources,
    "save_source_cursor": _save_source_cursor,
    "set_source_error": _set_source_error,
}
