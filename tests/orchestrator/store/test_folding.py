"""Moves of rows a batch inserts fold into the insert; the guards and the write order hold."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from helpers import open_deferral
from orchestrator.errors import StateConflictError
from orchestrator.state import TaskState, TransitionError
from orchestrator.store import (
    RunRecord,
    TaskInstanceRecord,
    WriteBatch,
    open_store,
)
from orchestrator.store.base import Op

NewRun = Callable[..., tuple[RunRecord, list[TaskInstanceRecord]]]


def _run_and_its_rows(new_run: NewRun) -> tuple[WriteBatch, WriteBatch]:
    """A batch creating run r1 without rows, and one inserting its rows (as a step does)."""
    run, instances = new_run("r1")
    created, inserted = WriteBatch(), WriteBatch()
    created.create_run(run, [])
    inserted.add_task_instances(instances)
    return created, inserted


def _kinds(batch: WriteBatch) -> list[str]:
    return [op.kind for op in batch.ops]


def test_a_move_that_would_fold_is_still_checked_first(new_run: NewRun) -> None:
    """Folding into the insert skips the UPDATE, never the state machine or the field names."""
    _created, batch = _run_and_its_rows(new_run)
    key = ("r1", "extract", -1)
    with pytest.raises(TransitionError, match="cannot move from none to running"):
        batch.set_task_state(key, TaskState.NONE, TaskState.RUNNING)
    with pytest.raises(ValueError, match="set_task_state cannot set 'pool'"):
        batch.set_task_state(key, TaskState.NONE, TaskState.SCHEDULED, pool="gpu")
    with pytest.raises(TransitionError, match="cannot move from none to deferred"):
        open_deferral(batch, "extract", TaskState.NONE)
    assert _kinds(batch) == ["add_task_instances"]
    assert batch.ops[0].args["moved"] == {}  # nothing refused reached the insert


async def test_sensors_inserted_and_deferred_in_one_batch_are_inserted_deferred(
    state_dir: Path, new_run: NewRun
) -> None:
    created, batch = _run_and_its_rows(new_run)
    for task_id in ("extract", "load"):
        batch.set_task_state(("r1", task_id, -1), TaskState.NONE, TaskState.SCHEDULED)
        open_deferral(batch, task_id, at=5.0)
    assert _kinds(batch) == ["add_task_instances", "open_deferrals"]
    assert batch.ops[1].args["moves"] == []  # no UPDATE behind the INSERT
    async with open_store(state_dir) as store:
        await store.commit(created)
        await store.commit(batch)
        rows = {ti.task_id: ti for ti in await store.list_task_instances("r1")}
        assert {
            (t, ti.state, ti.try_number, ti.started_at, ti.next_call) for t, ti in rows.items()
        } == {
            ("extract", TaskState.DEFERRED, 1, 5.0, "{}"),
            ("load", TaskState.DEFERRED, 1, 5.0, "{}"),
            ("transform", TaskState.NONE, 0, None, None),
        }
        assert [t.task_id for t in await store.list_triggers()] == ["extract", "load"]
        assert [a.state for a in await store.list_tries("r1", "load")] == [TaskState.DEFERRED]


async def test_a_move_from_a_state_the_batch_did_not_insert_still_fails_the_batch(
    state_dir: Path, new_run: NewRun
) -> None:
    created, batch = _run_and_its_rows(new_run)
    batch.set_task_state(("r1", "extract", -1), TaskState.SCHEDULED, TaskState.QUEUED)
    assert _kinds(batch) == ["add_task_instances", "set_task_state"]
    async with open_store(state_dir) as store:
        await store.commit(created)
        with pytest.raises(StateConflictError):
            await store.commit(batch)
        assert await store.list_task_instances("r1") == []


async def test_a_write_between_insert_and_move_lands_before_the_move(
    state_dir: Path, new_run: NewRun
) -> None:
    created, batch = _run_and_its_rows(new_run)
    key = ("r1", "extract", -1)
    batch.set_task_state(key, TaskState.NONE, TaskState.SCHEDULED, error="folded")
    batch.note_waiting(key, "a note on a scheduled row changes nothing")
    batch.set_task_state(key, TaskState.SCHEDULED, TaskState.QUEUED, queued_at=3.0)
    assert _kinds(batch) == ["add_task_instances", "note_waiting", "set_task_state"]
    async with open_store(state_dir) as store:
        await store.commit(created)
        await store.commit(batch)
        rows = {ti.task_id: ti for ti in await store.list_task_instances("r1")}
    assert (rows["extract"].state, rows["extract"].error) == (TaskState.QUEUED, "folded")
    assert rows["extract"].queued_at == 3.0


async def test_a_batch_built_by_hand_without_moves_inserts_rows_as_they_are(
    state_dir: Path, new_run: NewRun
) -> None:
    created, _ = _run_and_its_rows(new_run)
    rows = [TaskInstanceRecord(run_id="r1", task_id="extract", state=TaskState.SCHEDULED)]
    batch = WriteBatch([Op("add_task_instances", {"task_instances": rows})])
    async with open_store(state_dir) as store:
        await store.commit(created)
        await store.commit(batch)
        assert [ti.state for ti in await store.list_task_instances("r1")] == [TaskState.SCHEDULED]
