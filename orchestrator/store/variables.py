"""Airflow's Variables in the store: plain `sqlite3`, because `Variable.get` is synchronous.

DAG files call `Variable.get` at import time and tasks call it in worker processes, outside
any event loop of ours, so reads open the database read-only with the standard library. Writes
are made by the process that owns the state directory: the daemon (asked over its control
socket) or a CLI command holding the state directory's lock. The engine itself never reads
this table, so these separate connections cannot leave it with stale state.

The engine exports where its database is (`VARIABLES_DB_VARIABLE`) for the whole time it runs,
so the processes it starts (DAG-file checks, workers) read the same variables.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator.errors import StoreError
from orchestrator.store.statedir import DB_FILENAME

VARIABLES_DB_VARIABLE = "ORCHESTRATOR_VARIABLES_DB"
_BUSY_TIMEOUT_MS = 10_000  # a daemon's write in progress is waited for, not an error


@dataclass(frozen=True, kw_only=True)
class VariableRecord:
    """One variable: its key, its value as text (JSON if set with `serialize_json`)."""

    key: str
    value: str
    description: str = ""
    updated_at: float = 0.0


@contextmanager
def exported_variables_db(state_dir: Path) -> Iterator[None]:
    """Name `state_dir`'s database in this process's environment while the block runs."""
    previous = os.environ.get(VARIABLES_DB_VARIABLE)
    os.environ[VARIABLES_DB_VARIABLE] = str(state_dir.absolute() / DB_FILENAME)
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(VARIABLES_DB_VARIABLE, None)
        else:
            os.environ[VARIABLES_DB_VARIABLE] = previous


def variables_db() -> Path | None:
    """The database `Variable.get` reads: the engine's, else `$ORCHESTRATOR_STATE_DIR`'s."""
    exported = os.environ.get(VARIABLES_DB_VARIABLE)
    if exported:
        return Path(exported)
    state_dir = os.environ.get("ORCHESTRATOR_STATE_DIR", "").strip()
    return Path(state_dir) / DB_FILENAME if state_dir else None


def read_variable(db_path: Path, key: str) -> str | None:
    """The value of `key`, or None when it, the table or the database does not exist."""
    rows = _read(db_path, "SELECT value FROM variables WHERE key = ?", (key,))
    return str(rows[0][0]) if rows else None


def list_variables(db_path: Path) -> list[VariableRecord]:
    """Every variable, by key; none before the database exists."""
    sql = "SELECT key, value, description, updated_at FROM variables ORDER BY key"
    return [
        VariableRecord(key=key, value=value, description=description, updated_at=float(updated_at))
        for key, value, description, updated_at in _read(db_path, sql, ())
    ]


def put_variable(db_path: Path, record: VariableRecord) -> None:
    """Insert or replace `record`; the caller owns the state directory (see module doc)."""
    with _connect(db_path, readonly=False) as connection, connection:
        connection.execute(
            "INSERT INTO variables (key, value, description, updated_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value, "
            "description = excluded.description, updated_at = excluded.updated_at",
            (record.key, record.value, record.description, record.updated_at),
        )


def delete_variable(db_path: Path, key: str) -> bool:
    """Remove `key`; False if there was no such variable."""
    with _connect(db_path, readonly=False) as connection, connection:
        cursor = connection.execute("DELETE FROM variables WHERE key = ?", (key,))
        return cursor.rowcount > 0


def _read(db_path: Path, sql: str, parameters: tuple[str, ...]) -> list[tuple[Any, ...]]:
    if not db_path.is_file():
        return []
    try:
        with _connect(db_path, readonly=True) as connection:
            return list(connection.execute(sql, parameters))
    except sqlite3.OperationalError as error:
        if "no such table" in str(error):  # a database not migrated yet: no variables
            return []
        raise StoreError(f"cannot read variables from {db_path}: {error}") from error


def _connect(db_path: Path, *, readonly: bool) -> closing[sqlite3.Connection]:
    mode = "ro" if readonly else "rw"
    try:
        connection = sqlite3.connect(
            f"{db_path.absolute().as_uri()}?mode={mode}", uri=True, timeout=_BUSY_TIMEOUT_MS / 1000
        )
    except sqlite3.Error as error:
        raise StoreError(f"cannot open {db_path}: {error}") from error
    return closing(connection)
