"""The reads and writes of tasks that depend on their past: the previous run, a waiting note."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from orchestrator.state import TaskState
from orchestrator.store import RunRecord, TaskInstanceRecord, WriteBatch, open_store

NewRun = Callable[..., tuple[RunRecord, list[TaskInstanceRecord]]]


async def test_the_previous_run_goes_by_logical_date_else_queue_time_then_creation(
    state_dir: Path, new_run: NewRun
) -> None:
    # (run_id, logical_date, queued_at), in the order they are created
    created = [
        ("scheduled-2", 200.0, 1000.0),
        ("scheduled-1", 100.0, 1000.0),  # a backfill, created after a later interval's run
        ("manual-a", None, 150.0),
        ("manual-b", None, 150.0),  # queued at the same moment: creation decides
    ]
    async with open_store(state_dir) as store:
        for run_id, logical_date, queued_at in created:
            run, tasks = new_run(run_id, queued_at=queued_at)
            batch = WriteBatch()
            batch.create_run(replace(run, logical_date=logical_date), tasks)
            await store.commit(batch)
        other = WriteBatch()
        other.create_run(*new_run("other-dag", dag_id="train", queued_at=120.0))
        await store.commit(other)
        previous = {run_id: await store.previous_run("etl", run_id) for run_id, _, _ in created}
    assert {run_id: record and record.run_id for run_id, record in previous.items()} == {
        "scheduled-1": None,
        "manual-a": "scheduled-1",
        "manual-b": "manual-a",
        "scheduled-2": "manual-b",
    }


async def test_a_waiting_note_is_kept_only_on_an_instance_in_none(
    state_dir: Path, new_run: NewRun
) -> None:
    async with open_store(state_dir) as store:
        batch = WriteBatch()
        batch.create_run(*new_run(tasks=("extract", "load")))
        batch.set_task_state(("run-1", "extract", -1), TaskState.NONE, TaskState.SKIPPED)
        await store.commit(batch)
        batch = WriteBatch()
        for task_id in ("extract", "load"):
            batch.note_waiting(("run-1", task_id, -1), "waiting for the previous run's load")
        await store.commit(batch)
        noted = {ti.task_id: ti.error for ti in await store.list_task_instances("run-1")}
    assert noted == {"extract": None, "load": "waiting for the previous run's load"}
