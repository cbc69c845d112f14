"""Records to rows and back for what waits: deferred tasks' triggers, events, run triggers.

Their JSON columns (a trigger's kwargs and cursor, an event's payload) are read through
`jsonvalues.RowDamage`: a value that cannot be read marks the record damaged.
"""

from __future__ import annotations

from typing import Any

from orchestrator.store.jsonvalues import ANY_JSON, OBJECT, RowDamage
from orchestrator.store.records import EventRecord, RunSourceRecord, TriggerRecord
from orchestrator.store.rows import Row, encode_json

TRIGGER_COLUMNS = "run_id, task_id, map_index, classpath, kwargs, created_at, timeout_at, cursor"
EVENT_COLUMNS = "dag_id, dedup_key, payload, received_at, source, run_id, event_id"
RUN_SOURCE_COLUMNS = "dag_id, source, classpath, kwargs, armed_at, cursor, error"


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
    damage = RowDamage()
    return TriggerRecord(
        run_id=row[0],
        task_id=row[1],
        map_index=row[2],
        classpath=row[3],
        kwargs=damage.decode(row[4], "kwargs", OBJECT, {}),
        created_at=row[5],
        timeout_at=row[6],
        cursor=damage.decode(row[7], "cursor", ANY_JSON),
        damaged=damage.reason,
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
    damage = RowDamage()
    return EventRecord(
        dag_id=dag_id,
        dedup_key=dedup_key,
        payload=damage.decode(payload, "payload", OBJECT, {}),
        received_at=received_at,
        source=source,
        run_id=run_id,
        event_id=event_id,
        damaged=damage.reason,
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
    damage = RowDamage()
    return RunSourceRecord(
        dag_id=dag_id,
        source=source,
        classpath=classpath,
        kwargs=damage.decode(kwargs, "kwargs", OBJECT, {}),
        armed_at=armed_at,
        cursor=damage.decode(cursor, "cursor", ANY_JSON),
        error=error,
        damaged=damage.reason,
    )
