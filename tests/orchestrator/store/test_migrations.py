"""Migrations: numbered without gaps, applied once and atomically, tracked in user_version."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from contextlib import closing
from pathlib import Path

import pytest

from orchestrator.errors import StoreError
from orchestrator.store import WriteBatch, open_store
from orchestrator.store.migrations import LATEST_VERSION, MIGRATIONS, split_statements
from orchestrator.store.overview import _BY_STATE

NewBatch = Callable[..., WriteBatch]


def _query(db_path: Path | str, sql: str) -> list[tuple[object, ...]]:
    with closing(sqlite3.connect(db_path)) as connection:
        return connection.execute(sql).fetchall()


def _schema(db_path: Path | str) -> list[tuple[object, ...]]:
    return _query(db_path, "SELECT type, name, sql FROM sqlite_master ORDER BY name")


def test_migrations_are_numbered_from_one_without_gaps() -> None:
    assert [migration.number for migration in MIGRATIONS] == list(range(1, len(MIGRATIONS) + 1))
    assert LATEST_VERSION == len(MIGRATIONS)
    assert all(migration.description for migration in MIGRATIONS)


async def test_a_new_database_gets_the_whole_schema(state_dir: Path) -> None:
    async with open_store(state_dir) as store:
        pass
    assert _query(store.path, "PRAGMA user_version") == [(LATEST_VERSION,)]
    names = {name for kind, name, _ in _schema(store.path) if kind in ("table", "index")}
    tables = {"dags", "import_errors", "runs", "task_instances", "task_tries", "task_results"}
    assert tables | {"events", "triggers"} <= names
    assert {"runs_by_dag", "runs_by_state"} <= names


async def test_reopening_applies_nothing_and_keeps_the_data(
    state_dir: Path, create_run_batch: NewBatch
) -> None:
    async with open_store(state_dir) as store:
        await store.commit(create_run_batch("r1"))
    schema = _schema(store.path)
    async with open_store(state_dir) as store:
        assert await store.get_run("r1") is not None
        assert store.statistics().transactions == 0  # not even a migration transaction
    assert _schema(store.path) == schema
    assert _query(store.path, "PRAGMA user_version") == [(LATEST_VERSION,)]


async def test_an_empty_file_is_migrated_like_a_new_one(state_dir: Path) -> None:
    state_dir.mkdir()
    (state_dir / "orchestrator.db").write_bytes(b"")
    async with open_store(state_dir) as store:
        assert await store.list_runs() == []
    assert _query(store.path, "PRAGMA user_version") == [(LATEST_VERSION,)]


async def test_a_failing_migration_leaves_the_database_as_it_was(state_dir: Path) -> None:
    state_dir.mkdir()
    db_path = state_dir / "orchestrator.db"
    with closing(sqlite3.connect(db_path)) as connection:
        connection.execute("CREATE TABLE runs (someone_elses TEXT)")  # not our database
    before = _schema(db_path)
    with pytest.raises(StoreError) as caught:
        async with open_store(state_dir):
            pass
    message = str(caught.value)
    assert message.startswith(f"Migration 1 ({MIGRATIONS[0].description}) failed on {db_path}")
    assert "table runs already exists" in message
    assert "left unchanged" in message
    assert _schema(db_path) == before
    assert _query(db_path, "PRAGMA user_version") == [(0,)]


def test_statements_split_on_semicolons_outside_strings_and_comments() -> None:
    script = """
        -- a comment; with a semicolon
        CREATE TABLE a (x TEXT DEFAULT 'one; two');
        CREATE TRIGGER t AFTER INSERT ON a BEGIN
            UPDATE a SET x = 'y';
        END;
        -- trailing comment only
    """
    statements = split_statements(script)
    assert len(statements) == 2
    assert statements[0].endswith("CREATE TABLE a (x TEXT DEFAULT 'one; two');")
    assert statements[1].startswith("CREATE TRIGGER t") and statements[1].endswith("END;")
    with closing(sqlite3.connect(":memory:")) as connection:
        for statement in statements:
            connection.execute(statement)
        connection.execute("INSERT INTO a DEFAULT VALUES")
        assert connection.execute("SELECT x FROM a").fetchall() == [("y",)]


async def test_an_event_is_recorded_once_per_dag_and_dedup_key(
    state_dir: Path, create_run_batch: NewBatch
) -> None:
    """The events table is there for run triggers; its UNIQUE key is the one-event-one-run rule."""
    async with open_store(state_dir) as store:
        await store.commit(create_run_batch("r1"))
    insert = (
        "INSERT INTO events (dag_id, dedup_key, payload, received_at, run_id) VALUES (?,?,?,?,?)"
    )
    with closing(sqlite3.connect(store.path)) as connection:
        connection.execute(insert, ("etl", "a.csv:1", "{}", 1.0, "r1"))
        with pytest.raises(sqlite3.IntegrityError, match="UNIQUE"):
            connection.execute(insert, ("etl", "a.csv:1", "{}", 2.0, None))
        connection.execute(insert, ("etl", "a.csv:2", "{}", 2.0, None))


async def test_the_ui_reads_ended_instances_by_state_from_a_partial_index(state_dir: Path) -> None:
    """Migration 9: only ended instances are in `task_instances_by_state` (none of 100,000
    waiting sensors, no entry per move before an end), and the UI's read still uses it."""
    state_dir.mkdir()
    db_path = state_dir / "orchestrator.db"
    with closing(sqlite3.connect(db_path)) as connection:
        for migration in MIGRATIONS[:8]:  # a store made by the release before
            connection.executescript(migration.sql)
        connection.execute("PRAGMA user_version = 8")
        connection.execute(
            "INSERT INTO runs (run_id, dag_id, state, run_type, queued_at)"
            " VALUES ('r1', 'd', 'running', 'manual', 1.0)"
        )
        rows = [("a", "success", 5.0), ("b", "failed", 6.0), ("c", "deferred", None)]
        connection.executemany(
            "INSERT INTO task_instances (run_id, task_id, map_index, state, try_number,"
            " max_tries, pool, priority, ended_at) VALUES ('r1', ?, -1, ?, 1, 1, 'default', 1, ?)",
            rows,
        )
        connection.commit()
    async with open_store(state_dir) as store:
        pass
    assert _query(store.path, "PRAGMA user_version") == [(LATEST_VERSION,)]
    [(sql,)] = _query(
        store.path, "SELECT sql FROM sqlite_master WHERE name = 'task_instances_by_state'"
    )
    assert str(sql).endswith("WHERE ended_at IS NOT NULL")
    indexed = "SELECT task_id FROM task_instances INDEXED BY task_instances_by_state"
    assert _query(store.path, f"{indexed} WHERE ended_at IS NOT NULL ORDER BY task_id") == [
        ("a",),
        ("b",),
    ]
    with closing(sqlite3.connect(store.path)) as connection:
        sql = f"EXPLAIN QUERY PLAN {_BY_STATE.format(after='')}"
        plan = connection.execute(sql, ("success", 10)).fetchall()
    assert any("task_instances_by_state" in str(step) for step in plan), plan
