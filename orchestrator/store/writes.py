"""How each kind of write (`Op`) becomes SQL on the writer connection.

Each operation is one statement on its success path (a list is one `executemany`, or for the
rows of task instances, tries and triggers a `BulkInsert`, many rows a statement); the writer
runs them all in the connection's thread, a whole transaction per trip (`writer.py`).
Extra reads happen only on the failure path, to say what went wrong.

State changes are guarded with `WHERE state = old`: if the row has moved on, nothing is
written and the batch fails. This is what keeps a task instance from recording two
successes, whatever the engine does.
"""

from __future__ import annotations

import itertools
import sqlite3
from collections.abc import Callable, Sequence
from functools import cache
from typing import Any

from orchestrator.errors import DuplicateRunError, StateConflictError, StoreError
from orchestrator.state import RunState, TaskState
from orchestrator.store.alertrows import ALERT_HANDLERS
from orchestrator.store.apiwrites import API_HANDLERS
from orchestrator.store.base import Op, TaskKey
from orchestrator.store.bulkinsert import BulkInsert
from orchestrator.store.eventwrites import EVENT_HANDLERS
from orchestrator.store.folding import Moved
from orchestrator.store.records import (
    DagRecord,
    ImportErrorRecord,
    RunRecord,
    TaskInstanceRecord,
    TriggerRecord,
    TryRecord,
    check_task_state_fields,
)
from orchestrator.store.rows import (
    DAG_COLUMNS,
    IMPORT_ERROR_COLUMNS,
    RUN_COLUMNS,
    TASK_INSTANCE_COLUMNS,
    TRY_COLUMNS,
    dag_params,
    encode_json,
    import_error_params,
    moved_task_instance_params,
    run_params,
    task_instance_params,
    try_params,
)
from orchestrator.store.waitrows import TRIGGER_COLUMNS, trigger_params

Connection = sqlite3.Connection

# Re-parsing a file must not undo a user's pause: `is_paused` is set only when the row is new.
_UPSERT_DAG = f"""
    INSERT INTO dags ({DAG_COLUMNS}) VALUES (?, ?, ?, ?, ?)
    ON CONFLICT (dag_id) DO UPDATE SET
        fileloc = excluded.fileloc, description = excluded.description,
        updated_at = excluded.updated_at
"""
_INSERT_IMPORT_ERROR = f"INSERT INTO import_errors ({IMPORT_ERROR_COLUMNS}) VALUES (?, ?, ?, ?)"
_INSERT_RUN = f"INSERT INTO runs ({RUN_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
_INSERT_TASK_INSTANCES = BulkInsert("task_instances", TASK_INSTANCE_COLUMNS)
_INSERT_TRIES = BulkInsert("task_tries", TRY_COLUMNS)
_END_TRY = """
    UPDATE task_tries SET state = ?, ended_at = ?, error = ?
    WHERE run_id = ? AND task_id = ? AND map_index = ? AND try_number = ?
"""
_REOPEN_TRY = """
    UPDATE task_tries SET state = 'running', ended_at = NULL, error = NULL
    WHERE run_id = ? AND task_id = ? AND map_index = ? AND try_number = ?
"""
_INSERT_TRIGGERS = BulkInsert("triggers", TRIGGER_COLUMNS)
# A later result replaces an earlier one, so clearing and re-running a task instance works.
_SAVE_RESULT = """
    INSERT INTO task_results (run_id, task_id, map_index, value, size) VALUES (?, ?, ?, ?, ?)
    ON CONFLICT (run_id, task_id, map_index) DO UPDATE SET
        value = excluded.value, size = excluded.size
"""
_TASK_KEY = "run_id = ? AND task_id = ? AND map_index = ?"
# A cleared run runs again: it has not ended. started_at is set anew when it is admitted.
_REQUEUE_RUN = "UPDATE runs SET state = ?, ended_at = NULL WHERE run_id = ? AND state = ?"
# Children first: the foreign keys cascade too, but a store must not depend on that pragma.
_DELETE_TASK_INSTANCE = [
    f"DELETE FROM {table} WHERE {_TASK_KEY}"
    for table in ("triggers", "task_results", "task_tries", "task_instances")
]


def apply_op(connection: Connection, op: Op) -> None:
    """Apply one write inside the caller's transaction; raise to fail its batch."""
    handler = _HANDLERS.get(op.kind)
    if handler is None:
        raise ValueError(f"unknown write operation {op.kind!r}")
    handler(connection, **op.args)


def _upsert_dag(connection: Connection, dag: DagRecord) -> None:
    connection.execute(_UPSERT_DAG, dag_params(dag))


def _replace_import_errors(connection: Connection, errors: list[ImportErrorRecord]) -> None:
    connection.execute("DELETE FROM import_errors")
    if errors:
        connection.executemany(_INSERT_IMPORT_ERROR, [import_error_params(e) for e in errors])


def _create_run(
    connection: Connection, run: RunRecord, task_instances: list[TaskInstanceRecord]
) -> None:
    _check_all_in_run(run.run_id, task_instances)
    try:
        connection.execute(_INSERT_RUN, run_params(run))
    except sqlite3.IntegrityError as error:
        collision = _run_collision(connection, run)
        if collision is None:
            raise
        raise collision from error
    _add_task_instances(connection, task_instances)


def _check_all_in_run(run_id: str, task_instances: Sequence[TaskInstanceRecord]) -> None:
    for ti in task_instances:
        if ti.run_id != run_id:
            raise ValueError(f"task instance {ti.task_id} belongs to run {ti.run_id}, not {run_id}")


def _run_collision(connection: Connection, run: RunRecord) -> StoreError | None:
    """The error for a unique key the new run collided with (dedup key, then run id), if any."""
    if run.dedup_key is not None:
        existing = _fetch_value(
            connection,
            "SELECT run_id FROM runs WHERE dag_id = ? AND dedup_key = ?",
            (run.dag_id, run.dedup_key),
        )
        if existing is not None:
            return DuplicateRunError(
                f"DAG {run.dag_id} already has run {existing} for dedup key {run.dedup_key!r}: "
                "this event was already handled, so no second run was created.",
                dag_id=run.dag_id,
                dedup_key=run.dedup_key,
                existing_run_id=existing,
            )
    if _fetch_value(connection, "SELECT 1 FROM runs WHERE run_id = ?", (run.run_id,)):
        return StoreError(f"A run with id {run.run_id} already exists; run ids must be unique.")
    return None


def _add_task_instances(
    connection: Connection, task_instances: list[TaskInstanceRecord], moved: Moved | None = None
) -> None:
    """Insert the rows, each in the last state its batch moved it to (`store.folding`)."""
    columns = (moved or {}).get
    params = [
        task_instance_params(ti)
        if (moves := columns((ti.run_id, ti.task_id, ti.map_index))) is None
        else moved_task_instance_params(ti, moves)
        for ti in task_instances
    ]
    _INSERT_TASK_INSTANCES.run(connection, params)


def _set_run_state(
    connection: Connection, run_id: str, old: RunState, new: RunState, at: float
) -> None:
    cursor = connection.execute(_run_state_sql(new), (new.value, at, run_id, old.value))
    if cursor.rowcount != 1:
        found = _fetch_value(connection, "SELECT state FROM runs WHERE run_id = ?", (run_id,))
        raise _conflict(f"run {run_id}", old, new, found)


def _requeue_run(
    connection: Connection, run_id: str, old: RunState, new: RunState, at: float
) -> None:
    cursor = connection.execute(_REQUEUE_RUN, (new.value, run_id, old.value))
    if cursor.rowcount != 1:
        found = _fetch_value(connection, "SELECT state FROM runs WHERE run_id = ?", (run_id,))
        raise _conflict(f"run {run_id}", old, new, found)


@cache
def _run_state_sql(new: RunState) -> str:
    """`at` is when the run started (moving to running) or ended (every other move finishes it)."""
    column = "started_at" if new is RunState.RUNNING else "ended_at"
    return f"UPDATE runs SET state = ?, {column} = ? WHERE run_id = ? AND state = ?"


def _set_task_state(
    connection: Connection, key: TaskKey, old: TaskState, new: TaskState, fields: dict[str, Any]
) -> None:
    sql = _task_state_sql(tuple(fields))
    cursor = connection.execute(sql, (new.value, *fields.values(), *key, old.value))
    if cursor.rowcount != 1:
        raise _move_conflict(connection, key, old, new)


def _move_conflict(
    connection: Connection, key: TaskKey, old: TaskState, new: TaskState
) -> StateConflictError:
    found = _fetch_value(connection, f"SELECT state FROM task_instances WHERE {_TASK_KEY}", key)
    return _conflict(f"task instance {_describe_key(key)}", old, new, found)


@cache
def _task_state_sql(names: tuple[str, ...]) -> str:
    """The UPDATE for one set of field names; cached because the engine uses only a few sets."""
    # Field names become SQL, so the allow-list is checked here too, not only in WriteBatch.
    check_task_state_fields(names)
    assignments = "".join(f", {name} = ?" for name in names)
    return f"UPDATE task_instances SET state = ?{assignments} WHERE {_TASK_KEY} AND state = ?"


def _open_deferrals(
    connection: Connection,
    moves: list[dict[str, Any]],
    tries: list[TryRecord],
    triggers: list[TriggerRecord],
) -> None:
    """Many sensors' first tries opened into `deferred` (`WriteBatch.open_deferral`)."""
    for names, group in itertools.groupby(moves, key=lambda move: tuple(move["fields"])):
        rows = list(group)
        params = [(m["new"].value, *m["fields"].values(), *m["key"], m["old"].value) for m in rows]
        # Each key is one row, so every move applied exactly when the count is the rows'.
        if connection.executemany(_task_state_sql(names), params).rowcount != len(params):
            _raise_first_unmoved(connection, rows)
    _INSERT_TRIES.run(connection, [try_params(attempt) for attempt in tries])
    _INSERT_TRIGGERS.run(connection, [trigger_params(trigger) for trigger in triggers])


def _raise_first_unmoved(connection: Connection, moves: list[dict[str, Any]]) -> None:
    """The conflict of the first move in a bulk that did not apply (the batch fails)."""
    for move in moves:
        conflict = _move_conflict(connection, move["key"], move["old"], move["new"])
        if conflict.found != move["new"].value:
            raise conflict
    raise StoreError(f"A bulk of {len(moves)} task instance moves did not all apply.")


def _conflict(what: str, old: str, new: str, found: str | None) -> StateConflictError:
    where = f"it is {found}" if found is not None else "it does not exist"
    return StateConflictError(
        f"Cannot move {what} from {old} to {new}: {where}. Someone else changed it first, "
        "so this batch was not applied.",
        expected=str(old),
        found=found,
    )


def _start_try(connection: Connection, attempt: TryRecord) -> None:
    connection.execute(_INSERT_TRIES.one, try_params(attempt))


def _end_try(
    connection: Connection,
    key: TaskKey,
    try_number: int,
    state: TaskState,
    at: float,
    error: str | None,
) -> None:
    cursor = connection.execute(_END_TRY, (state.value, at, error, *key, try_number))
    if cursor.rowcount != 1:
        raise StoreError(f"Task instance {_describe_key(key)} has no try {try_number} to end.")


def _reopen_try(connection: Connection, key: TaskKey, try_number: int, at: float) -> None:
    cursor = connection.execute(_REOPEN_TRY, (*key, try_number))
    if cursor.rowcount != 1:
        raise StoreError(f"Task instance {_describe_key(key)} has no try {try_number} to resume.")


def _set_next_call(connection: Connection, key: TaskKey, next_call: str | None) -> None:
    sql = f"UPDATE task_instances SET next_call = ? WHERE {_TASK_KEY}"
    cursor = connection.execute(sql, (next_call, *key))
    if cursor.rowcount != 1:
        raise StoreError(f"There is no task instance {_describe_key(key)}.")


def _note_waiting(connection: Connection, key: TaskKey, reason: str | None) -> None:
    # Only while it waits: a note never overwrites the error of an instance that ran.
    sql = f"UPDATE task_instances SET error = ? WHERE {_TASK_KEY} AND state = 'none'"
    connection.execute(sql, (reason, *key))


def _add_trigger(connection: Connection, trigger: TriggerRecord) -> None:
    connection.execute(_INSERT_TRIGGERS.one, trigger_params(trigger))


def _delete_trigger(connection: Connection, key: TaskKey) -> None:
    connection.execute(f"DELETE FROM triggers WHERE {_TASK_KEY}", key)


def _save_trigger_cursor(connection: Connection, key: TaskKey, cursor: Any) -> None:
    text = encode_json(cursor, what="a trigger cursor")
    connection.execute(f"UPDATE triggers SET cursor = ? WHERE {_TASK_KEY}", (text, *key))


def _save_result(connection: Connection, key: TaskKey, value_json: str) -> None:
    size = len(value_json.encode())
    connection.execute(_SAVE_RESULT, (*key, value_json, size))


def _delete_results(connection: Connection, keys: list[TaskKey]) -> None:
    connection.executemany(f"DELETE FROM task_results WHERE {_TASK_KEY}", keys)


def _delete_task_instances(connection: Connection, keys: list[TaskKey]) -> None:
    for sql in _DELETE_TASK_INSTANCE:
        connection.executemany(sql, keys)


def _fetch_value(connection: Connection, sql: str, params: Sequence[Any]) -> Any:
    """The first column of the first row, or None when there is no row."""
    rows = connection.execute(sql, params).fetchall()
    return rows[0][0] if rows else None


def _describe_key(key: TaskKey) -> str:
    run_id, task_id, map_index = key
    suffix = f"[{map_index}]" if map_index >= 0 else ""
    return f"{task_id}{suffix} of run {run_id}"


_HANDLERS: dict[str, Callable[..., None]] = {
    "upsert_dag": _upsert_dag,
    "replace_import_errors": _replace_import_errors,
    "create_run": _create_run,
    "set_run_state": _set_run_state,
    "add_task_instances": _add_task_instances,
    "set_task_state": _set_task_state,
    "start_try": _start_try,
    "end_try": _end_try,
    "save_result": _save_result,
    "delete_results": _delete_results,
    "delete_task_instances": _delete_task_instances,
    "requeue_run": _requeue_run,
    "reopen_try": _reopen_try,
    "set_next_call": _set_next_call,
    "open_deferrals": _open_deferrals,
    "note_waiting": _note_waiting,
    "add_trigger": _add_trigger,
    "delete_trigger": _delete_trigger,
    "save_trigger_cursor": _save_trigger_cursor,
    **EVENT_HANDLERS,
    **API_HANDLERS,
    **ALERT_HANDLERS,
}
