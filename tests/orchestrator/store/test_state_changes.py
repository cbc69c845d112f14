"""Guarded writes: a wrong expected state, a duplicate or a bad write fails its whole batch."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import anyio
import pytest

from helpers import open_deferral
from orchestrator.errors import DuplicateRunError, StateConflictError, StoreError
from orchestrator.state import RunState, TaskState, TransitionError
from orchestrator.store import (
    DagRecord,
    TaskInstanceRecord,
    TryRecord,
    WriteBatch,
    open_store,
)
from orchestrator.store.base import Op

NewBatch = Callable[..., WriteBatch]
KEY = ("r1", "extract", -1)


async def test_a_wrong_expected_state_fails_the_whole_batch(
    state_dir: Path, create_run_batch: NewBatch
) -> None:
    async with open_store(state_dir) as store:
        await store.commit(create_run_batch("r1"))
        batch = WriteBatch()
        batch.upsert_dag(DagRecord(dag_id="etl", fileloc="dags/etl.py"))
        batch.set_task_state(("r1", "load", -1), TaskState.NONE, TaskState.SCHEDULED)
        batch.set_task_state(KEY, TaskState.SCHEDULED, TaskState.QUEUED)  # it is still none
        with pytest.raises(StateConflictError) as caught:
            await store.commit(batch)
        assert await store.list_dags() == []
        assert {ti.state for ti in await store.list_task_instances("r1")} == {TaskState.NONE}
    error = caught.value
    assert (error.expected, error.found) == ("scheduled", "none")
    assert str(error).startswith(
        "Cannot move task instance extract of run r1 from scheduled to queued: it is none."
    )


async def test_a_missing_task_instance_is_a_conflict_naming_it(
    state_dir: Path, create_run_batch: NewBatch
) -> None:
    async with open_store(state_dir) as store:
        await store.commit(create_run_batch("r1"))
        batch = WriteBatch()
        batch.set_task_state(("r1", "fan", 4), TaskState.NONE, TaskState.SCHEDULED)
        with pytest.raises(StateConflictError, match=r"fan\[4\] of run r1 .*it does not exist"):
            await store.commit(batch)


async def test_a_run_moves_only_from_the_state_it_is_in(
    state_dir: Path, create_run_batch: NewBatch
) -> None:
    async with open_store(state_dir) as store:
        await store.commit(create_run_batch("r1"))
        batch = WriteBatch()
        batch.set_run_state("r1", RunState.RUNNING, RunState.SUCCESS, at=5.0)
        with pytest.raises(
            StateConflictError, match="run r1 from running to success: it is queued"
        ):
            await store.commit(batch)
        run = await store.get_run("r1")
        assert run is not None and (run.state, run.ended_at) == (RunState.QUEUED, None)


async def test_two_racing_successes_record_only_one(
    state_dir: Path, create_run_batch: NewBatch
) -> None:
    async with open_store(state_dir) as store:
        await store.commit(create_run_batch("r1"))
        batch = WriteBatch()
        for old, new in [
            (TaskState.NONE, TaskState.SCHEDULED),
            (TaskState.SCHEDULED, TaskState.QUEUED),
            (TaskState.QUEUED, TaskState.RUNNING),
        ]:
            batch.set_task_state(KEY, old, new)
        await store.commit(batch)
        outcomes: list[str] = []

        async def finish(result: str) -> None:
            batch = WriteBatch()
            batch.set_task_state(KEY, TaskState.RUNNING, TaskState.SUCCESS, ended_at=9.0)
            batch.save_result(KEY, result)
            try:
                await store.commit(batch)
            except StateConflictError:
                outcomes.append("refused")
            else:
                outcomes.append(result)

        async with anyio.create_task_group() as task_group:
            task_group.start_soon(finish, '"first"')
            task_group.start_soon(finish, '"second"')
        assert sorted(outcomes) == ['"first"', "refused"]
        assert await store.get_results("r1") == {("extract", -1): '"first"'}


def test_moves_of_one_row_in_a_row_are_one_write_from_the_first_state_to_the_last() -> None:
    batch = WriteBatch()
    batch.set_task_state(KEY, TaskState.NONE, TaskState.SCHEDULED)
    batch.set_task_state(KEY, TaskState.SCHEDULED, TaskState.QUEUED, queued_at=1.0)
    batch.set_task_state(KEY, TaskState.QUEUED, TaskState.RUNNING, started_at=2.0, error=None)
    batch.set_task_state(("r1", "load", -1), TaskState.NONE, TaskState.SCHEDULED)
    batch.save_result(("r1", "extract", -1), "1")
    batch.set_task_state(("r1", "load", -1), TaskState.SCHEDULED, TaskState.QUEUED)
    moves = [(op.args["key"][1], op.args["old"], op.args["new"]) for op in batch.ops[:2]]
    assert moves == [
        ("extract", TaskState.NONE, TaskState.RUNNING),
        ("load", TaskState.NONE, TaskState.SCHEDULED),
    ]
    assert batch.ops[0].args["fields"] == {"queued_at": 1.0, "started_at": 2.0, "error": None}
    assert len(batch.ops) == 4  # a write between two moves of `load` keeps them apart


async def test_a_folded_move_lands_whole_and_is_guarded_by_its_first_state(
    state_dir: Path, create_run_batch: NewBatch
) -> None:
    async with open_store(state_dir) as store:
        await store.commit(create_run_batch("r1"))
        batch = WriteBatch()
        batch.set_task_state(KEY, TaskState.NONE, TaskState.SCHEDULED)
        batch.set_task_state(KEY, TaskState.SCHEDULED, TaskState.QUEUED, queued_at=1.0)
        batch.set_task_state(KEY, TaskState.QUEUED, TaskState.RUNNING, try_number=1)
        await store.commit(batch)
        (ti,) = [ti for ti in await store.list_task_instances("r1") if ti.task_id == "extract"]
        assert (ti.state, ti.queued_at, ti.try_number) == (TaskState.RUNNING, 1.0, 1)
        again = WriteBatch()
        again.set_task_state(KEY, TaskState.NONE, TaskState.SCHEDULED)  # it is running now
        again.set_task_state(KEY, TaskState.SCHEDULED, TaskState.QUEUED)
        with pytest.raises(StateConflictError, match="from none to queued: it is running"):
            await store.commit(again)


async def test_sensors_deferring_side_by_side_are_one_write_with_every_row(
    state_dir: Path, create_run_batch: NewBatch
) -> None:
    async with open_store(state_dir) as store:
        await store.commit(create_run_batch("r1"))
        batch = WriteBatch()
        for task_id in ("extract", "load"):
            batch.set_task_state(("r1", task_id, -1), TaskState.NONE, TaskState.SCHEDULED)
            open_deferral(batch, task_id)
        assert [op.kind for op in batch.ops] == ["open_deferrals"]
        moves = [(m["old"], m["new"]) for m in batch.ops[0].args["moves"]]
        assert moves == [(TaskState.NONE, TaskState.DEFERRED)] * 2
        await store.commit(batch)
        rows = {ti.task_id: ti for ti in await store.list_task_instances("r1")}
        assert {(t, ti.state, ti.try_number, ti.next_call) for t, ti in rows.items()} == {
            ("extract", TaskState.DEFERRED, 1, "{}"),
            ("load", TaskState.DEFERRED, 1, "{}"),
            ("transform", TaskState.NONE, 0, None),
        }
        assert [t.task_id for t in await store.list_triggers()] == ["extract", "load"]
        assert [a.state for a in await store.list_tries("r1", "load")] == [TaskState.DEFERRED]


async def test_a_bulk_of_deferrals_with_one_row_elsewhere_fails_whole_naming_it(
    state_dir: Path, create_run_batch: NewBatch
) -> None:
    async with open_store(state_dir) as store:
        await store.commit(create_run_batch("r1"))
        scheduled = WriteBatch()
        scheduled.set_task_state(("r1", "load", -1), TaskState.NONE, TaskState.SCHEDULED)
        await store.commit(scheduled)
        batch = WriteBatch()
        open_deferral(batch, "load")
        open_deferral(batch, "extract")  # it is still none
        with pytest.raises(
            StateConflictError, match="extract of run r1 from scheduled to deferred: it is none"
        ):
            await store.commit(batch)
        states = {ti.task_id: ti.state for ti in await store.list_task_instances("r1")}
        assert (states["load"], states["extract"]) == (TaskState.SCHEDULED, TaskState.NONE)
        assert await store.list_triggers() == []
        assert await store.list_tries("r1", "load") == []


def test_a_transition_the_state_machine_forbids_is_refused_by_the_batch() -> None:
    batch = WriteBatch()
    with pytest.raises(TransitionError, match="cannot move from success to running"):
        batch.set_task_state(KEY, TaskState.SUCCESS, TaskState.RUNNING)
    with pytest.raises(TransitionError, match="cannot move from queued to success"):
        batch.set_run_state("r1", RunState.QUEUED, RunState.SUCCESS, at=1.0)
    assert not batch


def test_an_unknown_task_field_is_refused_by_the_batch() -> None:
    batch = WriteBatch()
    with pytest.raises(ValueError, match="set_task_state cannot set 'pool'"):
        batch.set_task_state(KEY, TaskState.NONE, TaskState.SCHEDULED, pool="gpu")
    assert not batch


async def test_a_hand_built_op_cannot_smuggle_a_column_into_sql(
    state_dir: Path, create_run_batch: NewBatch
) -> None:
    fields = {"state = 'success', error": "x"}
    args = {"key": KEY, "old": TaskState.NONE, "new": TaskState.SKIPPED, "fields": fields}
    op = Op("set_task_state", args)  # built by hand: WriteBatch would refuse it
    async with open_store(state_dir) as store:
        await store.commit(create_run_batch("r1"))
        with pytest.raises(StoreError, match="set_task_state cannot set") as caught:
            await store.commit(WriteBatch([op]))
        assert isinstance(caught.value.__cause__, ValueError)
        assert (await store.list_task_instances("r1"))[0].state == TaskState.NONE


async def test_an_unknown_op_fails_its_batch(state_dir: Path) -> None:
    async with open_store(state_dir) as store:
        with pytest.raises(StoreError, match=r"at drop_table \(write 1 of 1\)"):
            await store.commit(WriteBatch([Op("drop_table", {})]))


async def test_a_repeated_dedup_key_is_one_event_one_run(
    state_dir: Path, create_run_batch: NewBatch
) -> None:
    key = "data/incoming/a.csv:2048:1700000000"
    async with open_store(state_dir) as store:
        await store.commit(create_run_batch("r1", dedup_key=key))
        with pytest.raises(DuplicateRunError) as caught:
            await store.commit(create_run_batch("r2", dedup_key=key))
        assert await store.get_run("r2") is None
        assert await store.list_task_instances("r2") == []
        # The same key on another DAG, and runs without a key, are other events.
        await store.commit(create_run_batch("r3", dag_id="other", dedup_key=key))
        await store.commit(create_run_batch("r4"))
        await store.commit(create_run_batch("r5"))
    error = caught.value
    assert (error.existing_run_id, error.dag_id, error.dedup_key) == ("r1", "etl", key)
    assert f"DAG etl already has run r1 for dedup key {key!r}" in str(error)


async def test_a_repeated_run_id_is_refused_but_not_as_a_duplicate_event(
    state_dir: Path, create_run_batch: NewBatch
) -> None:
    async with open_store(state_dir) as store:
        await store.commit(create_run_batch("r1", dedup_key="k1"))
        with pytest.raises(StoreError, match="A run with id r1 already exists") as caught:
            await store.commit(create_run_batch("r1", dedup_key="k2"))
    assert not isinstance(caught.value, DuplicateRunError)


async def test_task_instances_must_belong_to_the_run_they_are_created_with(
    state_dir: Path, create_run_batch: NewBatch
) -> None:
    batch = create_run_batch("r1")
    batch.ops[0].args["task_instances"].append(TaskInstanceRecord(run_id="r9", task_id="x"))
    async with open_store(state_dir) as store:
        with pytest.raises(StoreError, match="task instance x belongs to run r9, not r1"):
            await store.commit(batch)
        assert await store.get_run("r1") is None


async def test_ending_a_try_that_never_started_fails(
    state_dir: Path, create_run_batch: NewBatch
) -> None:
    async with open_store(state_dir) as store:
        await store.commit(create_run_batch("r1"))
        batch = WriteBatch()
        batch.end_try(KEY, 1, TaskState.FAILED, at=1.0, error=None)
        with pytest.raises(StoreError, match="extract of run r1 has no try 1 to end"):
            await store.commit(batch)


async def test_a_try_for_an_unknown_task_instance_fails_its_batch(
    state_dir: Path, create_run_batch: NewBatch
) -> None:
    attempt = TryRecord(
        run_id="r1",
        task_id="ghost",
        map_index=-1,
        try_number=1,
        state=TaskState.RUNNING,
        started_at=1.0,
        log_path="logs/ghost.log",
    )
    async with open_store(state_dir) as store:
        await store.commit(create_run_batch("r1"))
        batch = WriteBatch()
        batch.start_try(attempt)
        with pytest.raises(StoreError, match=r"start_try \(write 1 of 1\).*FOREIGN KEY") as caught:
            await store.commit(batch)
        assert caught.value.__cause__ is not None
        assert await store.list_tries("r1", "ghost") == []
