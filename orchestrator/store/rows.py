"""Records to rows and back: the one place that knows each table's column order.

Rows are plain tuples (no row factory) because a 1000-task run reads and writes thousands of
them and tuple indexing is the cheapest conversion there is.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from orchestrator.state import RunState, TaskState
from orchestrator.store.records import (
    DagRecord,
    EventRecord,
    ImportErrorRecord,
    RunRecord,
    RunSourceRecord,
    TaskInstanceRecord,
    TokenRecord,
    TriggerRecord,
    TryRecord,
    WebhookRecord,
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
TRIGGER_COLUMNS = "run_id, task_id, map_index, classpath, kwargs, created_at, timeout_at, cursor"
EVENT_COLUMNS = "dag_id, dedup_key, payload, received_at, source, run_id, event_id"
RUN_SOURCE_COLUMNS = "dag_id, source, classpath, kwargs, armed_at, cursor, error"
TRY_COLUMNS = (
    "run_id, task_id, map_index, try_number, state, started_at, ended_at, log_path, error, pid"
)
TOKEN_COLUMNS = "token_id, name, scope, secret_hash, created_at, expires_at, revoked_at"
WEBHOOK_COLUMNS = (
    "name, dag_id, kind, secret_env, secret_file, filters, conf_map, signature_header,"
    " delivery_header, rate, created_at"
)


def encode_json(value: Any, *, what: str) -> str:
    """Strict JSON text (no NaN, no pickle fallback); `what` names the value in the error."""
    try:
        return json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError) as error:
        raise ValueError(f"{what} is not JSON: {error}") from error


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
    """A run; one whose conf cannot be decoded comes back `damaged` (with an empty conf).

    One damaged row must not make every listing fail: it is shown as damaged, and
    `orchestrator db check` names it.
    """
    run_id, dag_id, state, conf, run_type, dedup_key, logical_date, queued, started, ended = row[
        :10
    ]
    decoded, damage = _decode_json(conf, "conf")
    return RunRecord(
        run_id=run_id,
        dag_id=dag_id,
        state=RunState(state),
        conf=decoded if isinstance(decoded, dict) else {},
        damaged=damage,
        run_type=run_type,
        dedup_key=dedup_key,
        logical_date=logical_date,
        queued_at=queued,
        started_at=started,
        ended_at=ended,
        data_interval_end=row[10],
    )


def _decode_json(text: Any, column: str) -> tuple[Any, str | None]:
    """The value of a JSON column, or None and why it cannot be read."""
    try:
        return json.loads(text), None
    except (TypeError, ValueError) as error:
        return None, f"its {column} is not valid JSON ({error})"


#: Every column that holds JSON text, for `orchestrator db check`: (table, column).
JSON_COLUMNS = (
    ("runs", "conf"),
    ("task_results", "value"),
    ("events", "payload"),
    ("triggers", "kwargs"),
    ("triggers", "cursor"),
    ("run_sources", "kwargs"),
    ("run_sources", "cursor"),
    ("webhooks", "filters"),
    ("webhooks", "conf_map"),
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


def task_instance_from_row(row: Row) -> TaskInstanceRecord:
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
        next_call=row[13],
        interrupted_tries=row[14],
    )


def trigger_params(trigger: TriggerRecord) -> tuple[Any, ...]:
    return (
        trigger.run_id,
        trigger.task_id,
        trigger.map_index,
        trigger.classpath,
        encode_json(trigger.kwargs, what=f"the arguments of trigger {trigger.classpath}"),
        trigger.created_at,
        trigger.timeout_at,
        None if trigger.cursor is None else encode_json(trigger.cursor, what="a trigger cursor"),
    )


def trigger_from_row(row: Row) -> TriggerRecord:
    return TriggerRecord(
        run_id=row[0],
        task_id=row[1],
        map_index=row[2],
        classpath=row[3],
        kwargs=json.loads(row[4]),
        created_at=row[5],
        timeout_at=row[6],
        cursor=None if row[7] is None else json.loads(row[7]),
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


def event_params(event: EventRecord) -> tuple[Any, ...]:
    payload = encode_json(event.payload, what=f"the payload of event {event.dedup_key!r}")
    return (
        event.dag_id,
        event.dedup_key,
        payload,
        event.received_at,
        event.source,
        event.run_id,
        event.event_id,
    )


def event_from_row(row: Row) -> EventRecord:
    dag_id, dedup_key, payload, received_at, source, run_id, event_id = row
    return EventRecord(
        dag_id=dag_id,
        dedup_key=dedup_key,
        payload=json.loads(payload),
        received_at=received_at,
        source=source,
        run_id=run_id,
        event_id=event_id,
    )


def run_source_params(source: RunSourceRecord) -> tuple[Any, ...]:
    return (
        source.dag_id,
        source.source,
        source.classpath,
        encode_json(source.kwargs, what=f"the arguments of run trigger {source.source}"),
        source.armed_at,
        None if source.cursor is None else encode_json(source.cursor, what="a trigger cursor"),
        source.error,
    )


def run_source_from_row(row: Row) -> RunSourceRecord:
    dag_id, source, classpath, kwargs, armed_at, cursor, error = row
    return RunSourceRecord(
        dag_id=dag_id,
        source=source,
        classpath=classpath,
        kwargs=json.loads(kwargs),
        armed_at=armed_at,
        cursor=None if cursor is None else json.loads(cursor),
        error=error,
    )


def token_params(token: TokenRecord) -> tuple[Any, ...]:
    return (
        token.token_id,
        token.name,
        token.scope,
        token.secret_hash,
        token.created_at,
        token.expires_at,
        token.revoked_at,
    )


def token_from_row(row: Row) -> TokenRecord:
    token_id, name, scope, secret_hash, created_at, expires_at, revoked_at = row
    return TokenRecord(
        token_id=token_id,
        name=name,
        scope=scope,
        secret_hash=secret_hash,
        created_at=created_at,
        expires_at=expires_at,
        revoked_at=revoked_at,
    )


def webhook_params(webhook: WebhookRecord) -> tuple[Any, ...]:
    what = f"the {{}} of webhook {webhook.name}"
    return (
        webhook.name,
        webhook.dag_id,
        webhook.kind,
        webhook.secret_env,
        webhook.secret_file,
        encode_json([list(pair) for pair in webhook.filters], what=what.format("filters")),
        encode_json(webhook.conf_map, what=what.format("conf mapping")),
        webhook.signature_header,
        webhook.delivery_header,
        webhook.rate,
        webhook.created_at,
    )


def webhook_from_row(row: Row) -> WebhookRecord:
    name, dag_id, kind, secret_env, secret_file, filters, conf_map = row[:7]
    return WebhookRecord(
        name=name,
        dag_id=dag_id,
        kind=kind,
        secret_env=secret_env,
        secret_file=secret_file,
        filters=[(path, pattern) for path, pattern in json.loads(filters)],
        conf_map=json.loads(conf_map),
        signature_header=row[7],
        delivery_header=row[8],
        rate=row[9],
        created_at=row[10],
    )
