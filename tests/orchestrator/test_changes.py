"""`endings`: the changes that finish a task instance or a run, for those that read only those."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from orchestrator.changes import Change, EventRecorded, RunChanged, TaskChanged, endings
from orchestrator.state import RunState, TaskState


def _task(state: TaskState) -> TaskChanged:
    return TaskChanged(
        run_id="r", dag_id="d", task_id="t", map_index=-1, state=state, try_number=1, at=0.0
    )


def _run(state: RunState) -> RunChanged:
    return RunChanged(run_id="r", dag_id="d", state=state, at=0.0)


def test_endings_keeps_finished_tasks_and_runs_in_order_and_nothing_else() -> None:
    event = EventRecorded(dag_id="d", source="s", dedup_key="k", run_id=None, at=0, received_at=0)
    changes: list[Change] = [
        *(_task(state) for state in TaskState),
        *(_run(state) for state in RunState),
        event,
    ]
    expected = [c for c in changes if not isinstance(c, EventRecorded) and c.state.finished]
    assert endings(changes) == expected
    # What arming a sensor announces: nothing for those that read endings only.
    assert endings([_task(TaskState.SCHEDULED), _task(TaskState.DEFERRED)]) == []
    # Interleaved, from any iterable: the same, in the order given.
    mixed = [changes[i] for i in (16, 0, 7, 13, 5, 6, 15, 3, 8)]
    assert endings(iter(mixed)) == [c for c in mixed if c in expected]


def test_a_task_change_made_quickly_is_the_same_frozen_value() -> None:
    fields: dict[str, Any] = {
        "run_id": "r",
        "dag_id": "d",
        "task_id": "t",
        "map_index": 2,
        "state": TaskState.DEFERRED,
        "try_number": 1,
        "at": 5.0,
        "error": "e",
        "log_path": "t.log",
    }
    quick = TaskChanged(**fields)
    assert quick == dataclasses.replace(quick) and hash(quick) == hash(dataclasses.replace(quick))
    assert dataclasses.asdict(quick) == fields
    with pytest.raises(dataclasses.FrozenInstanceError):
        quick.state = TaskState.SUCCESS  # type: ignore[misc]
