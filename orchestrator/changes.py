"""State changes the engine announces as it commits them (for live displays and the API)."""

from __future__ import annotations

from dataclasses import dataclass

from orchestrator.state import RunState, TaskState


@dataclass(frozen=True, kw_only=True)
class TaskChanged:
    """A task instance moved to `state` (announced after the store committed it)."""

    run_id: str
    dag_id: str
    task_id: str
    map_index: int
    state: TaskState
    try_number: int
    at: float
    error: str | None = None
    log_path: str | None = None


@dataclass(frozen=True, kw_only=True)
class RunChanged:
    """A run moved to `state` (announced after the store committed it)."""

    run_id: str
    dag_id: str
    state: RunState
    at: float
    #: A scheduled run: the moment its schedule said it was due (its data interval's end).
    scheduled_for: float | None = None


@dataclass(frozen=True, kw_only=True)
class EventRecorded:
    """An event for a DAG was recorded: `run_id` is the run it started, None while it waits."""

    dag_id: str
    source: str
    dedup_key: str
    run_id: str | None
    at: float
    received_at: float  # when the event arrived (before `at` for one that waited for its window)


Change = TaskChanged | RunChanged | EventRecorded
