"""Helpers shared by the tests (importable as `helpers`: pytest puts tests/ on the path)."""

from __future__ import annotations

from pathlib import Path

from orchestrator.authoring.dag import DAG
from orchestrator.loading.dagbag import DagBag
from orchestrator.state import TaskState
from orchestrator.store import TriggerRecord, TryRecord, WriteBatch


def bag_of(*dags: DAG) -> DagBag:
    """A DagBag holding DAGs built in the test itself."""
    return DagBag(
        folder=Path("."),
        dags={dag.dag_id: dag for dag in dags},
        files={dag.dag_id: dag.site.file for dag in dags},
    )


def open_deferral(
    batch: WriteBatch,
    task_id: str,
    old: TaskState = TaskState.SCHEDULED,
    *,
    at: float = 1.0,
    run_id: str = "r1",
) -> None:
    """What the scheduler writes for a sensor deferring at start (`Transitions.open_deferral`):
    its try, its time trigger and its move from `old` to deferred."""
    attempt = TryRecord(
        run_id=run_id,
        task_id=task_id,
        map_index=-1,
        try_number=1,
        state=TaskState.DEFERRED,
        started_at=at,
        log_path=f"{task_id}.log",
    )
    trigger = TriggerRecord(
        run_id=run_id,
        task_id=task_id,
        map_index=-1,
        classpath="triggers.time.TimeTrigger",
        kwargs={"moment": 9.0},
        created_at=at,
    )
    key = (run_id, task_id, -1)
    batch.open_deferral(key, old, attempt, trigger, try_number=1, started_at=at, next_call="{}")
