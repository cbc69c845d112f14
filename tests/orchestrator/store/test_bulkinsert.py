"""Many rows a statement insert what one row a statement inserted, in order, with its errors."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from helpers import open_deferral
from orchestrator.errors import StoreError
from orchestrator.state import TaskState
from orchestrator.store import RunRecord, TaskInstanceRecord, WriteBatch, open_store
from orchestrator.store.bulkinsert import ROWS_PER_STATEMENT, BulkInsert
from orchestrator.store.connection import connect_writer

NewRun = Callable[..., tuple[RunRecord, list[TaskInstanceRecord]]]
_COUNTS = [0, 1, ROWS_PER_STATEMENT - 1, ROWS_PER_STATEMENT, 2 * ROWS_PER_STATEMENT + 3]


def _table() -> sqlite3.Connection:
    db = sqlite3.connect(":memory:", isolation_level=None)
    db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, k TEXT UNIQUE NOT NULL, v REAL)")
    return db


def _rows(count: int) -> list[tuple[str, float | None]]:
    return [(f"k{i}", None if i % 3 else i / 2) for i in range(count)]


@pytest.mark.parametrize("count", _COUNTS)
def test_rows_land_in_their_order_with_their_values(count: int) -> None:
    one_at_a_time, bulk = _table(), _table()
    insert = BulkInsert("t", "k, v")
    one_at_a_time.executemany(insert.one, _rows(count))
    insert.run(bulk, _rows(count))
    select = "SELECT id, k, v FROM t ORDER BY id"
    assert bulk.execute(select).fetchall() == one_at_a_time.execute(select).fetchall()
    assert [k for _, k, _ in bulk.execute(select)] == [k for k, _ in _rows(count)]


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        # in a whole statement, in the last whole one, and among the rows left over
        (10, "UNIQUE constraint failed: t.k"),
        (2 * ROWS_PER_STATEMENT - 1, "UNIQUE constraint failed: t.k"),
        (2 * ROWS_PER_STATEMENT + 1, "NOT NULL constraint failed: t.k"),
    ],
)
def test_a_row_that_breaks_a_constraint_raises_the_error_one_a_statement_raised(
    bad: int, message: str
) -> None:
    rows: list[tuple[str | None, float | None]] = list(_rows(2 * ROWS_PER_STATEMENT + 3))
    rows[bad] = ("k0", 1.0) if "UNIQUE" in message else (None, 1.0)
    for insert_all in (
        lambda db: db.executemany(BulkInsert("t", "k, v").one, rows),
        lambda db: BulkInsert("t", "k, v").run(db, rows),
    ):
        with pytest.raises(sqlite3.IntegrityError, match=message):
            insert_all(_table())


async def test_many_sensors_deferred_at_once_keep_their_order_and_guards(
    state_dir: Path, new_run: NewRun
) -> None:
    task_ids = [f"wait_{i}" for i in range(2 * ROWS_PER_STATEMENT + 5)]
    run, instances = new_run("r1", tasks=task_ids)
    created, batch = WriteBatch(), WriteBatch()
    created.create_run(run, [])
    batch.add_task_instances(instances)
    for task_id in task_ids:
        batch.set_task_state(("r1", task_id, -1), TaskState.NONE, TaskState.SCHEDULED)
        open_deferral(batch, task_id, at=5.0)
    async with open_store(state_dir) as store:
        await store.commit(created)
        await store.commit(batch)
        assert [t.task_id for t in await store.list_triggers()] == task_ids
        rows = await store.list_task_instances("r1")
        assert [(ti.task_id, ti.state) for ti in rows] == [
            (task_id, TaskState.DEFERRED) for task_id in task_ids
        ]
        assert [a.state for a in await store.list_tries("r1", task_ids[-1])] == [TaskState.DEFERRED]
        # A row already there, among many new ones, fails the whole batch as it did.
        again = WriteBatch()
        more = [f"more_{i}" for i in range(ROWS_PER_STATEMENT)] + [task_ids[3]]
        again.add_task_instances(new_run("r1", tasks=more)[1])
        with pytest.raises(StoreError, match="UNIQUE constraint failed: task_instances"):
            await store.commit(again)
        assert len(await store.list_task_instances("r1")) == len(task_ids)


async def test_the_writer_keeps_its_statement_journals_in_memory(tmp_path: Path) -> None:
    async with connect_writer(tmp_path / "orchestrator.db", "FULL") as writer:
        assert list(await writer.execute_fetchall("PRAGMA temp_store")) == [(2,)]  # MEMORY
