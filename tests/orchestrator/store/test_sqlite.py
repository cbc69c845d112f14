"""Every record makes the round trip through SQLite unchanged; reads answer as documented."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from contextlib import closing
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from orchestrator.errors import StoreError
from orchestrator.state import RunState, TaskState
from orchestrator.store import (
    DagRecord,
    ImportErrorRecord,
    RunRecord,
    TaskInstanceRecord,
    TryRecord,
    WriteBatch,
    open_store,
)

NewRun = Callable[..., tuple[RunRecord, list[TaskInstanceRecord]]]
NewBatch = Callable[..., WriteBatch]


async def test_dags_round_trip_and_upsert_keeps_the_pause(state_dir: Path) -> None:
    first = DagRecord(dag_id="train", fileloc="dags/ml.py", description="fit", updated_at=5.0)
    second = DagRecord(
        dag_id="train", fileloc="dags/ml2.py", description="refit", is_paused=True, updated_at=9.5
    )
    other = DagRecord(dag_id="etl", fileloc="dags/etl.py")
    async with open_store(state_dir) as store:
        for dag in (first, other):
            batch = WriteBatch()
            batch.upsert_dag(dag)
            await store.commit(batch)
        assert await store.list_dags() == [other, first]
        batch = WriteBatch()
        batch.upsert_dag(second)
        await store.commit(batch)
        # A re-parse updates where the DAG lives, but a pause is the user's, not the file's.
        assert await store.list_dags() == [other, replace(second, is_paused=False)]


async def test_import_errors_are_replaced_as_a_whole(state_dir: Path) -> None:
    old = [ImportErrorRecord(fileloc="dags/a.py", line=3, message="SyntaxError", recorded_at=1.0)]
    new = [
        ImportErrorRecord(fileloc="dags/b.py", line=None, message="ImportError: x", recorded_at=2),
        ImportErrorRecord(fileloc="dags/c.py", line=12, message="cycle a → b → a", recorded_at=2),
    ]
    async with open_store(state_dir) as store:
        for errors in (old, new):
            batch = WriteBatch()
            batch.replace_import_errors(errors)
            await store.commit(batch)
        assert await store.list_import_errors() == new
        batch = WriteBatch()
        batch.replace_import_errors([])
        await store.commit(batch)
        assert await store.list_import_errors() == []


async def test_a_run_and_its_task_instances_round_trip(state_dir: Path) -> None:
    run = RunRecord(
        run_id="scheduled__2027-01-15",
        dag_id="train",
        state=RunState.QUEUED,
        conf={"path": "data/día-1.csv", "nested": {"list": [1, 2.5, None, True], "ü": "✓"}},
        run_type="event",
        dedup_key="data/día-1.csv:1024:1700000000",
        logical_date=1_800_000_000.0,
        queued_at=1_800_000_001.5,
    )
    # Not in alphabetical order: list_task_instances keeps the order they were created in.
    task_instances = [
        TaskInstanceRecord(run_id=run.run_id, task_id="validate", max_tries=3, priority=5),
        TaskInstanceRecord(run_id=run.run_id, task_id="train", pool="gpu", map_index=0),
        TaskInstanceRecord(run_id=run.run_id, task_id="train", pool="gpu", map_index=1),
        TaskInstanceRecord(run_id=run.run_id, task_id="deploy", error=None),
    ]
    async with open_store(state_dir) as store:
        batch = WriteBatch()
        batch.create_run(run, task_instances)
        await store.commit(batch)
        assert await store.get_run(run.run_id) == run
        assert await store.list_task_instances(run.run_id) == task_instances
    async with open_store(state_dir, readonly=True) as store:  # and it was durable
        assert await store.get_run(run.run_id) == run


async def test_run_states_record_when_the_run_started_and_ended(
    state_dir: Path, create_run_batch: NewBatch
) -> None:
    async with open_store(state_dir) as store:
        await store.commit(create_run_batch("r1"))
        batch = WriteBatch()
        batch.set_run_state("r1", RunState.QUEUED, RunState.RUNNING, at=10.0)
        await store.commit(batch)
        batch = WriteBatch()
        batch.set_run_state("r1", RunState.RUNNING, RunState.FAILED, at=20.0)
        await store.commit(batch)
        run = await store.get_run("r1")
    assert run is not None
    assert (run.state, run.started_at, run.ended_at) == (RunState.FAILED, 10.0, 20.0)


async def test_a_task_instance_moves_with_its_fields(
    state_dir: Path, create_run_batch: NewBatch
) -> None:
    key = ("r1", "extract", -1)
    async with open_store(state_dir) as store:
        await store.commit(create_run_batch("r1"))
        batch = WriteBatch()
        batch.set_task_state(key, TaskState.NONE, TaskState.SCHEDULED)
        batch.set_task_state(key, TaskState.SCHEDULED, TaskState.QUEUED, queued_at=1.0)
        batch.set_task_state(key, TaskState.QUEUED, TaskState.RUNNING, try_number=1, started_at=2.0)
        batch.set_task_state(
            key,
            TaskState.RUNNING,
            TaskState.UP_FOR_RETRY,
            ended_at=3.0,
            next_retry_at=63.0,
            error="ValueError: bad row 7",
        )
        await store.commit(batch)
        extract, transform, _ = await store.list_task_instances("r1")
    assert extract == TaskInstanceRecord(
        run_id="r1",
        task_id="extract",
        state=TaskState.UP_FOR_RETRY,
        try_number=1,
        queued_at=1.0,
        started_at=2.0,
        ended_at=3.0,
        next_retry_at=63.0,
        error="ValueError: bad row 7",
    )
    assert transform == TaskInstanceRecord(run_id="r1", task_id="transform")


async def test_tries_round_trip_oldest_first(state_dir: Path, create_run_batch: NewBatch) -> None:
    key = ("r1", "load", -1)
    tries = [
        TryRecord(
            run_id="r1",
            task_id="load",
            map_index=-1,
            try_number=number,
            state=TaskState.RUNNING,
            started_at=float(number),
            log_path=f"logs/r1/load/{number}.log",
            pid=4000 + number,
        )
        for number in (1, 2)
    ]
    async with open_store(state_dir) as store:
        await store.commit(create_run_batch("r1"))
        for attempt in reversed(tries):  # stored newest first, listed oldest first
            batch = WriteBatch()
            batch.start_try(attempt)
            await store.commit(batch)
        batch = WriteBatch()
        batch.end_try(key, 1, TaskState.FAILED, at=1.5, error="TimeoutError: slow")
        await store.commit(batch)
        first, second = await store.list_tries("r1", "load")
        assert await store.list_tries("r1", "extract") == []
    assert second == tries[1]
    assert (first.state, first.ended_at, first.error) == (
        TaskState.FAILED,
        1.5,
        "TimeoutError: slow",
    )
    assert (first.log_path, first.pid, first.started_at) == ("logs/r1/load/1.log", 4001, 1.0)


async def test_results_round_trip_per_map_index_and_the_last_one_wins(
    state_dir: Path, new_run: NewRun
) -> None:
    run, task_instances = new_run("r1", tasks=["pick"])
    task_instances += [TaskInstanceRecord(run_id="r1", task_id="fan", map_index=i) for i in (0, 1)]
    async with open_store(state_dir) as store:
        batch = WriteBatch()
        batch.create_run(run, task_instances)
        batch.save_result(("r1", "pick", -1), '{"best": "ü"}')
        batch.save_result(("r1", "fan", 0), "[1, 2]")
        batch.save_result(("r1", "fan", 1), "null")
        await store.commit(batch)
        batch = WriteBatch()
        batch.save_result(("r1", "fan", 1), "3")
        await store.commit(batch)
        assert await store.get_results("r1") == {
            ("pick", -1): '{"best": "ü"}',
            ("fan", 0): "[1, 2]",
            ("fan", 1): "3",
        }
        assert await store.get_results("nope") == {}


async def test_expanded_instances_join_an_existing_run(
    state_dir: Path, create_run_batch: NewBatch
) -> None:
    async with open_store(state_dir) as store:
        await store.commit(create_run_batch("r1", tasks=["split"]))
        batch = WriteBatch()
        expanded = [TaskInstanceRecord(run_id="r1", task_id="work", map_index=i) for i in range(3)]
        batch.add_task_instances(expanded)
        await store.commit(batch)
        assert [ti.key for ti in await store.list_task_instances("r1")] == [
            ("r1", "split", -1),
            ("r1", "work", 0),
            ("r1", "work", 1),
            ("r1", "work", 2),
        ]


async def test_list_runs_is_newest_first_and_filters(
    state_dir: Path, create_run_batch: NewBatch
) -> None:
    async with open_store(state_dir) as store:
        for run_id, dag_id, queued_at in [
            ("a1", "a", 1.0),
            ("b1", "b", 2.0),
            ("a2", "a", 3.0),
            ("a3", "a", 3.0),  # same moment as a2: the later one created is newer
        ]:
            await store.commit(create_run_batch(run_id, dag_id=dag_id, queued_at=queued_at))
        batch = WriteBatch()
        batch.set_run_state("a1", RunState.QUEUED, RunState.RUNNING, at=4.0)
        await store.commit(batch)

        async def ids(**filters: Any) -> list[str]:
            return [run.run_id for run in await store.list_runs(**filters)]

        assert await ids() == ["a3", "a2", "b1", "a1"]
        assert await ids(dag_id="a") == ["a3", "a2", "a1"]
        assert await ids(state=RunState.RUNNING) == ["a1"]
        assert await ids(dag_id="b", state=RunState.QUEUED) == ["b1"]
        assert await ids(dag_id="b", state=RunState.RUNNING) == []
        assert await ids(limit=2) == ["a3", "a2"]
        assert await ids(limit=0) == []
        assert await store.get_run("missing") is None
        with pytest.raises(ValueError, match="limit must be 0 or more, not -1"):
            await store.list_runs(limit=-1)


@pytest.mark.parametrize("conf", [{"bad": {1, 2}}, {"nan": float("nan")}])
async def test_a_conf_that_is_not_json_fails_its_batch(
    state_dir: Path, create_run_batch: NewBatch, conf: dict[str, Any]
) -> None:
    async with open_store(state_dir) as store:
        with pytest.raises(StoreError, match="the conf of run r1 is not JSON"):
            await store.commit(create_run_batch("r1", conf=conf))
        assert await store.get_run("r1") is None


async def test_integrity_check_is_empty_on_a_sound_database(
    state_dir: Path, create_run_batch: NewBatch
) -> None:
    async with open_store(state_dir) as store:
        await store.commit(create_run_batch("r1"))
        assert await store.integrity_check() == []


async def test_integrity_check_reports_a_dangling_row(state_dir: Path) -> None:
    async with open_store(state_dir) as store:
        # Written behind the store's back with foreign keys off, as an old bug might have.
        with closing(sqlite3.connect(store.path, isolation_level=None)) as connection:
            connection.execute(
                "INSERT INTO task_instances VALUES"
                " ('ghost', 't', -1, 'none', 0, 1, 'default', 1,"
                " NULL, NULL, NULL, NULL, NULL, NULL, 0)"
            )
        assert await store.integrity_check() == [
            "task_instances row 1 refers to a missing row of runs"
        ]
