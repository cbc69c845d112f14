"""Checkpoints beside the writer: commits never run one, and one never waits for a commit."""

from __future__ import annotations

import itertools
import logging
import sqlite3
from collections.abc import Callable
from contextlib import closing
from pathlib import Path

import anyio
import pytest
from diskkit import fill, small_tmpfs

from orchestrator.errors import StoreError
from orchestrator.store import WriteBatch, open_store
from orchestrator.store.checkpoints import BackgroundCheckpoints, checkpoint, restart_wal
from orchestrator.store.connection import connect_checkpointer
from orchestrator.store.statedir import DB_FILENAME
from orchestrator.store.writer import GroupCommitWriter

NewBatch = Callable[..., WriteBatch]


def wal_database(path: Path) -> sqlite3.Connection:
    connection = sqlite3.connect(path, isolation_level=None)
    connection.execute("PRAGMA journal_mode = WAL")
    connection.execute("PRAGMA wal_autocheckpoint = 0")
    connection.execute("CREATE TABLE t (value TEXT)")
    return connection


async def test_a_checkpoint_copies_what_is_committed_while_a_write_is_under_way(
    tmp_path: Path,
) -> None:
    path = tmp_path / "db.sqlite"
    with closing(wal_database(path)) as writer:
        writer.executemany("INSERT INTO t VALUES (?)", [("x" * 1000,)] * 50)
        writer.execute("BEGIN IMMEDIATE")  # a writer holds the write lock meanwhile
        writer.execute("INSERT INTO t VALUES ('not yet committed')")
        async with connect_checkpointer(path, "FULL") as connection:
            with anyio.fail_after(10):
                busy, frames, copied = await checkpoint(connection)
        writer.execute("COMMIT")
    assert busy == 0 and frames > 0 and copied == frames


async def test_the_stores_writer_leaves_checkpoints_to_the_background(
    state_dir: Path, create_run_batch: NewBatch
) -> None:
    async with open_store(state_dir) as store:
        await store.commit(create_run_batch("r1", tasks=["t"]))
        writer = store._writer
        assert isinstance(writer, GroupCommitWriter)
        rows = await writer._connection.execute_fetchall("PRAGMA wal_autocheckpoint")
        assert list(rows) == [(0,)]
    with closing(sqlite3.connect(state_dir / DB_FILENAME)) as connection:
        assert connection.execute("SELECT count(*) FROM runs").fetchone() == (1,)


async def test_the_writer_says_when_a_transaction_committed_and_only_then(
    state_dir: Path, create_run_batch: NewBatch, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with open_store(state_dir) as store:
        writer = store._writer
        assert isinstance(writer, GroupCommitWriter)
        told: list[None] = []
        monkeypatch.setattr(writer._background, "committed", lambda: told.append(None))
        await store.commit(create_run_batch("r1", tasks=["t"]))
        assert len(told) == 1
        with pytest.raises(StoreError):
            await store.commit(create_run_batch("r1", tasks=["t"]))  # the same run again
        assert len(told) == 1


async def test_a_background_checkpoint_on_a_full_disk_fails_alone_and_goes_on_once_space_returns(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "orchestrator.store")
    with small_tmpfs(tmp_path / "disk", "2m") as disk, closing(wal_database(disk / "db")) as db:
        db.execute("BEGIN")
        db.executemany("INSERT INTO t VALUES (?)", [("x" * 1000,)] * 300)
        db.execute("COMMIT")  # about 80 new pages, in the WAL only
        filler = fill(disk)  # copying them would grow the main file: no room for that
        async with connect_checkpointer(disk / "db", "FULL") as connection:
            background = BackgroundCheckpoints(connection)
            with anyio.fail_after(30):
                await background.once()  # it raised, in the store's task group
                await background.once()
                assert caplog.text.count("database or disk is full") == 1  # said once
                assert not background.restart_due
                filler.unlink()
                await background.once()
        assert "background checkpoints work again" in caplog.text
        assert background.restart_due and background.checkpoints == 3
        assert (disk / "db").stat().st_size > 300 * 1000  # the pages are in the main file now
        assert db.execute("SELECT count(*) FROM t").fetchone() == (300,)


def test_a_restart_checkpoint_lets_the_next_commit_write_the_wal_from_its_start(
    tmp_path: Path,
) -> None:
    path = tmp_path / "db.sqlite"
    with closing(wal_database(path)) as writer:
        writer.executemany("INSERT INTO t VALUES (?)", [("x" * 1000,)] * 200)
        grown = wal_size(path)
        writer.execute("INSERT INTO t VALUES ('one more')")
        assert wal_size(path) > grown  # a commit appends: the file grows each time
        restart_wal(writer)
        before = wal_size(path)
        for _ in range(20):
            writer.execute("INSERT INTO t VALUES ('in place')")
        assert wal_size(path) == before  # written over from its start, not grown
        assert writer.execute("SELECT count(*) FROM t").fetchone() == (221,)


async def test_a_restart_checkpoint_waits_for_no_reader(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite"
    with closing(wal_database(path)) as writer, closing(sqlite3.connect(path)) as reader:
        writer.executemany("INSERT INTO t VALUES (?)", [("x",)] * 10)
        reader.execute("BEGIN")
        assert reader.execute("SELECT count(*) FROM t").fetchone() == (10,)  # holds a snapshot
        writer.execute("INSERT INTO t VALUES ('after the snapshot')")
        with anyio.fail_after(10):  # busy at once, not after the busy timeout
            await anyio.to_thread.run_sync(restart_wal, writer)
        grown = wal_size(path)
        writer.execute("INSERT INTO t VALUES ('appended')")
        assert wal_size(path) > grown  # the reader kept the WAL from starting over
        reader.execute("COMMIT")


async def test_under_steady_commits_the_wal_starts_over_instead_of_growing(
    state_dir: Path, create_run_batch: NewBatch
) -> None:
    # A PASSIVE checkpoint alone never let it: the WAL grew by each commit for as long as
    # commits kept coming (every size below was larger than the one before).
    async with open_store(state_dir) as store:
        writer = store._writer
        assert isinstance(writer, GroupCommitWriter) and writer._background is not None
        background = writer._background
        wal = state_dir / f"{DB_FILENAME}-wal"
        sizes: list[int] = []
        with anyio.fail_after(60):
            while background.checkpoints < 3:  # each at most every 0.5 s, while commits come
                await store.commit(create_run_batch(f"r{len(sizes)}", tasks=["t"]))
                sizes.append(wal.stat().st_size)
    in_place = sum(1 for before, after in itertools.pairwise(sizes) if after <= before)
    assert in_place > 0, f"the WAL grew on each of {len(sizes)} commits"


def wal_size(path: Path) -> int:
    return Path(f"{path}-wal").stat().st_size
