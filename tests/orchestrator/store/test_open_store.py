"""Opening the store: the state directory, pragmas, damaged files, read-only mode, closing."""

from __future__ import annotations

import os
import sqlite3
import threading
from contextlib import closing
from pathlib import Path

import anyio
import pytest

from orchestrator.errors import ConfigError, StateDirError, StoreCorruptedError, StoreError
from orchestrator.store import WriteBatch, open_store
from orchestrator.store.migrations import LATEST_VERSION
from orchestrator.store.records import DagRecord


def _query(db_path: Path, sql: str) -> list[tuple[object, ...]]:
    """Read with a plain connection of our own, as an outside observer would."""
    with closing(sqlite3.connect(db_path)) as connection:
        return connection.execute(sql).fetchall()


def _upsert_batch(dag_id: str = "etl") -> WriteBatch:
    batch = WriteBatch()
    batch.upsert_dag(DagRecord(dag_id=dag_id, fileloc="dags/etl.py", updated_at=1.0))
    return batch


async def test_creates_the_state_dir_with_its_parents(tmp_path: Path) -> None:
    state_dir = tmp_path / "a" / "b" / "state"
    async with open_store(state_dir) as store:
        assert store.path == str(state_dir / "orchestrator.db")
    assert (state_dir / "orchestrator.db").is_file()


async def test_the_database_is_in_wal_mode(state_dir: Path) -> None:
    async with open_store(state_dir):
        pass
    assert _query(state_dir / "orchestrator.db", "PRAGMA journal_mode") == [("wal",)]


@pytest.mark.parametrize(("level", "number"), [("FULL", 2), ("normal", 1), ("EXTRA", 3)])
async def test_synchronous_is_set_on_both_connections(
    state_dir: Path, level: str, number: int
) -> None:
    async with open_store(state_dir, synchronous=level) as store:
        # White-box: the setting lives on each connection and nowhere else to look.
        for connection in (store._writer._connection, store._reader):  # type: ignore[union-attr]
            rows = list(await connection.execute_fetchall("PRAGMA synchronous"))
            assert rows[0][0] == number
        rows = list(await store._reader.execute_fetchall("PRAGMA foreign_keys"))
        assert rows[0][0] == 1


async def test_synchronous_off_is_refused_before_anything_is_created(state_dir: Path) -> None:
    with pytest.raises(ConfigError, match="synchronous must be NORMAL, FULL or EXTRA, not 'OFF'"):
        async with open_store(state_dir, synchronous="OFF"):
            pass
    assert not state_dir.exists()


async def test_a_state_dir_that_is_a_file_is_refused(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    state_dir.write_text("not a directory")
    with pytest.raises(StateDirError) as caught:
        async with open_store(state_dir):
            pass
    message = str(caught.value)
    assert str(state_dir) in message
    assert "regular file" in message
    assert "--state-dir" in message and "ORCHESTRATOR_STATE_DIR" in message
    assert "orchestrator.toml" in message


async def test_a_state_dir_under_a_file_names_the_file(tmp_path: Path) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("")
    state_dir = blocker / "nested" / "state"
    with pytest.raises(StateDirError) as caught:
        async with open_store(state_dir):
            pass
    assert f"{blocker} is a regular file" in str(caught.value)
    assert str(state_dir) in str(caught.value)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through permission bits")
async def test_a_state_dir_without_write_permission_is_refused(tmp_path: Path) -> None:
    state_dir = tmp_path / "locked"
    state_dir.mkdir(mode=0o500)
    try:
        with pytest.raises(StateDirError, match="permission denied"):
            async with open_store(state_dir):
                pass
    finally:
        state_dir.chmod(0o700)


async def test_readonly_on_a_missing_dir_creates_nothing(state_dir: Path) -> None:
    with pytest.raises(StoreError, match=r"There is no state at .* yet: run a pipeline first"):
        async with open_store(state_dir, readonly=True):
            pass
    assert not state_dir.exists()


async def test_readonly_on_an_empty_dir_creates_nothing(state_dir: Path) -> None:
    state_dir.mkdir()
    with pytest.raises(StoreError, match="--state-dir"):
        async with open_store(state_dir, readonly=True):
            pass
    assert list(state_dir.iterdir()) == []


async def test_readonly_reads_and_refuses_commits(state_dir: Path) -> None:
    async with open_store(state_dir) as store:
        await store.commit(_upsert_batch())
    async with open_store(state_dir, readonly=True) as store:
        assert [dag.dag_id for dag in await store.list_dags()] == ["etl"]
        with pytest.raises(StoreError, match="opened read-only; the batch was not applied"):
            await store.commit(_upsert_batch("other"))
        assert store.statistics().batches == 0
    assert [row[0] for row in _query(Path(store.path), "SELECT dag_id FROM dags")] == ["etl"]


async def test_readonly_sees_what_a_writer_commits_while_both_are_open(state_dir: Path) -> None:
    async with open_store(state_dir) as writer:
        async with open_store(state_dir, readonly=True) as reader:
            assert await reader.list_dags() == []
            await writer.commit(_upsert_batch())
            assert [dag.dag_id for dag in await reader.list_dags()] == ["etl"]


@pytest.mark.parametrize("readonly", [False, True])
async def test_a_file_that_is_not_a_database_is_left_untouched(
    state_dir: Path, readonly: bool
) -> None:
    state_dir.mkdir()
    db_path = state_dir / "orchestrator.db"
    garbage = b"these are not the pages you are looking for\n" * 200
    db_path.write_bytes(garbage)
    with pytest.raises(StoreCorruptedError) as caught:
        async with open_store(state_dir, readonly=readonly):
            pass
    message = str(caught.value)
    assert str(db_path) in message
    assert f"mv {db_path} {db_path}.corrupt" in message
    assert f'sqlite3 {db_path} ".recover" | sqlite3 {db_path}.recovered' in message
    assert db_path.read_bytes() == garbage
    assert sorted(path.name for path in state_dir.iterdir()) == ["orchestrator.db"]


async def test_a_damaged_database_is_refused(state_dir: Path) -> None:
    async with open_store(state_dir) as store:
        batch = WriteBatch()
        for index in range(300):
            batch.upsert_dag(DagRecord(dag_id=f"dag-{index:04}" * 5, fileloc="x.py"))
        await store.commit(batch)
    db_path = Path(store.path)
    with db_path.open("r+b") as file:  # overwrite one page in the middle with noise
        file.seek(4096 * 3)
        file.write(b"\xff" * 4096)
    damaged = db_path.read_bytes()
    with pytest.raises(StoreCorruptedError, match="is damaged"):
        async with open_store(state_dir):
            pass
    assert db_path.read_bytes() == damaged


async def test_a_newer_schema_is_refused(state_dir: Path) -> None:
    async with open_store(state_dir) as store:
        pass
    with closing(sqlite3.connect(store.path)) as connection:
        connection.execute(f"PRAGMA user_version = {LATEST_VERSION + 1}")
    for readonly in (False, True):
        with pytest.raises(StoreError) as caught:
            async with open_store(state_dir, readonly=readonly):
                pass
        assert (
            f"created by a newer orchestrator (schema {LATEST_VERSION + 1}, "
            f"this one knows {LATEST_VERSION})"
        ) in str(caught.value)


async def test_readonly_refuses_a_schema_not_yet_migrated(state_dir: Path) -> None:
    state_dir.mkdir()
    with closing(sqlite3.connect(state_dir / "orchestrator.db")) as connection:
        connection.execute("CREATE TABLE unrelated (x)")
    with pytest.raises(StoreError, match=r"has schema 0 .* Run a command that writes"):
        async with open_store(state_dir, readonly=True):
            pass
    assert _query(state_dir / "orchestrator.db", "PRAGMA user_version") == [(0,)]


async def test_a_closed_store_refuses_commits_and_reads(state_dir: Path) -> None:
    async with open_store(state_dir) as store:
        pass
    with pytest.raises(StoreError, match="is closed; the batch was not applied"):
        await store.commit(_upsert_batch())
    with pytest.raises(StoreError, match="is closed"):
        await store.list_dags()


async def test_an_empty_batch_commits_nothing(state_dir: Path) -> None:
    async with open_store(state_dir) as store:
        await store.commit(WriteBatch())
        assert store.statistics().transactions == 0


async def test_an_error_in_the_block_reaches_the_caller_unwrapped(state_dir: Path) -> None:
    with pytest.raises(KeyError, match="from the block"):
        async with open_store(state_dir):
            raise KeyError("from the block")


async def test_closing_stops_every_connection_thread(state_dir: Path) -> None:
    before = _connection_threads()
    async with open_store(state_dir) as store:
        await store.commit(_upsert_batch())
        started = _connection_threads() - before
        assert len(started) == 3  # the writer's, the reader's and the checkpointer's
    with anyio.fail_after(10):
        for thread in started:  # each ends right after its connection closes
            await anyio.to_thread.run_sync(thread.join)
    assert not any(thread.is_alive() for thread in started)


def test_the_store_package_exports_exactly_its_all() -> None:
    import orchestrator.store as package

    missing = [name for name in package.__all__ if not hasattr(package, name)]
    assert missing == []
    assert sorted(package.__all__) == list(package.__all__)  # kept sorted, so diffs stay clear


async def test_a_database_path_that_is_a_directory_is_refused(state_dir: Path) -> None:
    (state_dir / "orchestrator.db").mkdir(parents=True)
    before = _connection_threads()
    with pytest.raises(StoreError, match=r"orchestrator\.db cannot be opened: unable to open"):
        async with open_store(state_dir):
            pass
    # The failed connection's thread has ended: left running, it would answer on this test's
    # event loop after pytest closed it, and fail whichever test ran next.
    assert [thread for thread in _connection_threads() - before if thread.is_alive()] == []


def _connection_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if "_connection_worker_thread" in t.name}
