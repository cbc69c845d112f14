"""Records to rows and back for runs, their task instances and tries, DAGs and import errors.

Each table's column order is known in one place: here, in `waitrows.py` (what waits: triggers,
events, run triggers) or in `apirows.py` (the API's tokens and webhooks). JSON columns are
read through `jsonvalues.RowDamage`, so a value that cannot be read marks its record damaged.
Rows are plain tuples (no row factory) because a 1000-task run reads and writes thousands of
them and tuple indexing is the cheapest conversion there is.
"""

from __future__ import annotations

import json
import operator
import threading
from _json import encode_basestring, make_encoder
from collections.abc import Sequence
from typing import Any

from orchestrator.state import RunState, TaskState
from orchestrator.store.jsonvalues import OBJECT, RowDamage
from orchestrator.store.records import (
    DagRecord,
    ImportErrorRecord,
    RunRecord,
    TaskInstanceRecord,
    TryRecord,
)

Row = Sequence[Any]

DAG_COLUMNS = "dag_id, fileloc, description, is_paused, updated_at"
IMPORT_ERROR_COLUMNS = "fileloc, line, message, recorded_at"
RUN_COLUMNS = (
    "run_id, dag_id, state, conf, run_type, dedup_key, logical_date, queued_at, started_at,"
    " ended_at, data_interval_end"
)
TASK_INSTANCE_COLUMNS = (
    "run_id, task_id, map_index, state, try_number, max_tries, pool, priority, queued_at,"
    " started_at, ended_at, next_retry_at, error, next_call, interrupted_tries"
)
TRY_COLUMNS = (
    "run_id, task_id, map_index, try_number, state, started_at, ended_at, log_path, error, pid"
)


# The options of every value's encoding; `default` is its refusal of what is not JSON.
_ENCODER = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))


class _ThreadEncoder(threading.local):
    """`_ENCODER`'s C encoder, made once per thread instead of once per value.

    `JSONEncoder.encode` makes a new `_json.make_encoder` for each value, a third of the cost
    of encoding a trigger's arguments (1.3 instead of 2.1 us; 100,000 of them to arm 100,000
    sensors). Its `markers` (what it is inside of, to refuse circular values) are its own
    state, hence one per thread: two stores' writers may encode at once.
    """

    def __init__(self) -> None:
        self.markers: dict[int, Any] = {}
        self.encode = make_encoder(
            self.markers,
            _ENCODER.default,
            encode_basestring,  # ensure_ascii=False
            None,  # indent
            _ENCODER.key_separator,
            _ENCODER.item_separator,
            False,  # sort_keys
            False,  # skipkeys
            False,  # allow_nan
        )


_THREAD_ENCODER = _ThreadEncoder()


def encode_json(value: Any, *, what: str) -> str:
    """Strict JSON text (no NaN, no pickle fallback); `what` names the value in the error.

    The same text and errors as `_ENCODER.encode(value)`.
    """
    encoder = _THREAD_ENCODER
    try:
        return "".join(encoder.encode(value, 0))
    except BaseException as error:
        # A refused value leaves the containers it was inside of in `markers`: forgotten here,
        # or a later value reusing one's id would be taken for a circular one.
        encoder.markers.clear()
        if isinstance(error, (TypeError, ValueError)):
            raise ValueError(f"{what} is not JSON: {error}") from error
        raise


def dag_params(dag: DagRecord) -> tuple[Any, ...]:
    return (dag.dag_id, dag.fileloc, dag.description, int(dag.is_paused), dag.updated_at)


def dag_from_row(row: Row) -> DagRecord:
    dag_id, fileloc, description, is_paused, updated_at = row
    return DagRecord(
        dag_id=dag_id,
        fileloc=fileloc,
        description=description,
        is_paused=bool(is_paused),
        updated_at=updated_at,
    )


def import_error_params(error: ImportErrorRecord) -> tuple[Any, ...]:
    return (error.fileloc, error.line, error.message, error.recorded_at)


def import_error_from_row(row: Row) -> ImportErrorRecord:
    fileloc, line, message, recorded_at = row
    return ImportErrorRecord(fileloc=fileloc, line=line, message=message, recorded_at=recorded_at)


def run_params(run: RunRecord) -> tuple[Any, ...]:
    conf = encode_json(run.conf, what=f"the conf of run {run.run_id}")
    return (
        run.run_id,
        run.dag_id,
        run.state.value,
        conf,
        run.run_type,
        run.dedup_key,
        run.logical_date,
        run.queued_at,
        run.started_at,
        run.ended_at,
        run.data_interval_end,
    )


def run_from_row(row: Row) -> RunRecord:
    """A run; one whose conf cannot be read comes back `damaged`, with an empty conf."""
    run_id, dag_id, state, conf, run_type, dedup_key, logical_date, queued, started, ended = row[
        :10
    ]
    damage = RowDamage()
    return RunRecord(
        run_id=run_id,
        dag_id=dag_id,
        state=RunState(state),
        conf=damage.decode(conf, "conf", OBJECT, {}),
        run_type=run_type,
        dedup_key=dedup_key,
        logical_date=logical_date,
        queued_at=queued,
        started_at=started,
        ended_at=ended,
        data_interval_end=row[10],
        damaged=damage.reason,
    )


def task_instance_params(ti: TaskInstanceRecord) -> tuple[Any, ...]:
    return (
        ti.run_id,
        ti.task_id,
        ti.map_index,
        ti.state.value,
        ti.try_number,
        ti.max_tries,
        ti.pool,
        ti.priority,
        ti.queued_at,
        ti.started_at,
        ti.ended_at,
        ti.next_retry_at,
        ti.error,
        ti.next_call,
        ti.interrupted_tries,
    )


# A task instance's fields are named as its columns, so a row is its `__dict__`'s values in
# column order, taken in one C call.
_TASK_INSTANCE_ROW = operator.itemgetter(*TASK_INSTANCE_COLUMNS.split(", "))


def moved_task_instance_params(ti: TaskInstanceRecord, columns: dict[str, Any]) -> tuple[Any, ...]:
    """`task_instance_params` of `ti` with `columns` (by name, values as stored) set instead.

    `columns` sets `state` (as text), as every move does: its other fields are plain values.
    One merge and one C call, against building the row and then setting each column by index
    in a copy of it (0.6 against 1 us a row; 100,000 rows to arm 100,000 sensors).
    """
    row: tuple[Any, ...] = _TASK_INSTANCE_ROW(vars(ti) | columns)
    return row


def task_instance_from_row(row: Row) -> TaskInstanceRecord:
    """A task instance; its `next_call` stays JSON text, but text that cannot be read (or is
    not an object) comes back as None with the row `damaged`."""
    damage = RowDamage()
    next_call = row[13] if damage.decode(row[13], "next_call", OBJECT) is not None else None
    return TaskInstanceRecord(
        run_id=row[0],
        task_id=row[1],
        map_index=row[2],
        state=TaskState(row[3]),
        try_number=row[4],
        max_tries=row[5],
        pool=row[6],
        priority=row[7],
        queued_at=row[8],
        started_at=row[9],
        ended_at=row[10],
        next_retry_at=row[11],
        error=row[12],
        next_call=next_call,
        interrupted_tries=row[14],
        damaged=damage.reason,
    )


def try_params(attempt: TryRecord) -> tuple[Any, ...]:
    return (
        attempt.run_id,
        attempt.task_id,
        attempt.map_index,
        attempt.try_number,
        attempt.state.value,
        attempt.started_at,
        attempt.ended_at,
        attempt.log_path,
        attempt.error,
        attempt.pid,
    )


def try_from_row(row: Row) -> TryRecord:
    run_id, task_id, map_index, try_number, state, started, ended, log_path, error, pid = row
    return TryRecord(
        run_id=run_id,
        task_id=task_id,
        map_index=map_index,
        try_number=try_number,
        state=TaskState(state),
        started_at=started,
        ended_at=ended,
        log_path=log_path,
        error=error,
        pid=pid,
    )
