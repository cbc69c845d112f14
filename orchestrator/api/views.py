"""Records as the API's JSON: times as ISO 8601 in UTC, ids and states as text."""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from orchestrator.authoring.dag import DAG
    from orchestrator.store.records import (
        EventRecord,
        ImportErrorRecord,
        RunRecord,
        RunSourceRecord,
        TaskInstanceRecord,
        TriggerRecord,
        TryRecord,
    )

_TIMES = frozenset(
    {
        "logical_date",
        "queued_at",
        "started_at",
        "ended_at",
        "data_interval_end",
        "next_retry_at",
        "received_at",
        "created_at",
        "timeout_at",
        "armed_at",
        "recorded_at",
        "expires_at",
        "revoked_at",
    }
)


def iso(at: float | None) -> str | None:
    """Seconds since the epoch as ISO 8601 in UTC (`2026-11-21T09:30:00.123456+00:00`)."""
    return None if at is None else datetime.fromtimestamp(at, UTC).isoformat()


def record_json(record: Any, *, drop: tuple[str, ...] = ()) -> dict[str, Any]:
    """A frozen record's fields, times as ISO 8601, leaving out `drop`.

    A record the store could not read whole says `"damaged": true` and why (`"damage"`),
    beside the fields it could read; the others say `"damaged": false`.
    """
    fields = asdict(record)
    for name in drop:
        fields.pop(name, None)
    document = {name: iso(value) if name in _TIMES else value for name, value in fields.items()}
    if "damaged" in document:
        damage = document.pop("damaged")
        document["damaged"] = damage is not None
        if damage is not None:
            document["damage"] = damage
    return document


def dag_json(dag: DAG, *, paused: bool, file: str | None) -> dict[str, Any]:
    return {
        "dag_id": dag.dag_id,
        "description": dag.description,
        "file": file,
        "paused": paused,
        "tags": list(dag.tags),
        "tasks": len(dag.tasks),
        "max_active_runs": dag.max_active_runs,
        "schedule": None if dag.starts.schedule is None else dag.starts.schedule_text,
        "runs_on": dag.starts.source_names,
    }


def dag_detail_json(dag: DAG, *, paused: bool, file: str | None) -> dict[str, Any]:
    tasks = [
        {"task_id": task_id, "upstream": sorted(task.upstream_task_ids)}
        for task_id, task in dag.tasks.items()
    ]
    return {**dag_json(dag, paused=paused, file=file), "params": dag.params, "task_list": tasks}


def run_json(run: RunRecord) -> dict[str, Any]:
    return record_json(run)


def task_instance_json(ti: TaskInstanceRecord) -> dict[str, Any]:
    return record_json(ti, drop=("next_call",))


def try_json(attempt: TryRecord) -> dict[str, Any]:
    return record_json(attempt, drop=("log_path",))


def trigger_json(trigger: TriggerRecord) -> dict[str, Any]:
    return record_json(trigger, drop=("cursor",))


def run_source_json(source: RunSourceRecord) -> dict[str, Any]:
    return record_json(source, drop=("cursor",))


def event_json(event: EventRecord) -> dict[str, Any]:
    return record_json(event)


def import_error_json(error: ImportErrorRecord) -> dict[str, Any]:
    return record_json(error)
