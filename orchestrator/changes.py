"""State changes the engine announces as it commits them (for live displays and the API)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from orchestrator.quickinit import quick_init
from orchestrator.state import FINISHED_TASK_STATES, RunState, TaskState


@quick_init  # a step arming 100,000 sensors announces 100,000 of them
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


def endings(changes: Iterable[Change]) -> list[TaskChanged | RunChanged]:
    """The changes that finish a task instance or a run: all that alerts, asset events and
    run waiters read.

    One quick pass each, instead of a call per change: a step that arms 100,000 sensors
    announces 100,000 changes, none of them an ending, and four followers ask. A loop, not a
    comprehension, so that a task's change (nearly all of them) is told apart in one test:
    0.05 against 0.08 ms per 1,000 (timeit).
    """
    ended: list[TaskChanged | RunChanged] = []
    for change in changes:
        if isinstance(change, TaskChanged):
            if change.state in FINISHED_TASK_STATES:
                ended.append(change)
        elif isinstance(change, RunChanged) and change.state.finished:
            ended.append(change)
    return ended
