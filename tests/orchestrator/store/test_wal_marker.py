"""A lost `-wal` file is refused at open, and the window for losing one is narrowed."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest

from orchestrator.errors import StoreCorruptedError
from orchestrator.store import WriteBatch, open_store, writer
from orchestrator.store.records import DagRecord
from orchestrator.store.walmark import WalMarker, marker_path, wal_path


def _upsert(dag_id: str) -> WriteBatch:
    batch = WriteBatch()
    batch.upsert_dag(DagRecord(dag_id=dag_id, fileloc="dags/etl.py", updated_at=1.0))
    return batch


def _copy_as_after_a_crash(db_path: Path, target: Path, *, with_wal: bool) -> Path:
    """The files a `kill -9` leaves behind, copied while the store is open (no clean close)."""
    target.mkdir()
    for path in (db_path, marker_path(db_path), *([wal_path(db_path)] if with_wal else [])):
        shutil.copyfile(path, target / path.name)
    return target / db_path.name


async def test_a_missing_wal_with_unsaved_commits_is_refused(tmp_path: Path) -> None:
    async with open_store(tmp_path / "state") as store:
        await store.commit(_upsert("etl"))
        db_path = Path(store.path)
        assert wal_path(db_path).stat().st_size > 0  # the commit is in the -wal file only
        crashed = _copy_as_after_a_crash(db_path, tmp_path / "crashed", with_wal=False)
        intact = _copy_as_after_a_crash(db_path, tmp_path / "intact", with_wal=True)
    for readonly in (False, True):
        with pytest.raises(StoreCorruptedError) as caught:
            async with open_store(crashed.parent, readonly=readonly):
                pass
        message = str(caught.value)
        assert f"write-ahead log {wal_path(crashed)} is missing" in message
        assert f"`rm {marker_path(crashed)}`" in message
    assert sorted(path.name for path in crashed.parent.iterdir()) == [
        "orchestrator.db",
        "orchestrator.db-walmark",
    ]  # refused before SQLite could create an empty -wal that hides the loss
    async with open_store(intact.parent) as store:  # the same crash with its -wal is fine
        assert [dag.dag_id for dag in await store.list_dags()] == ["etl"]


async def test_accepting_the_loss_by_removing_the_marker_opens_the_last_checkpoint(
    tmp_path: Path,
) -> None:
    async with open_store(tmp_path / "state") as store:
        await store.commit(_upsert("etl"))
        crashed = _copy_as_after_a_crash(Path(store.path), tmp_path / "crashed", with_wal=False)
    marker_path(crashed).unlink()
    async with open_store(crashed.parent) as store:
        assert await store.list_dags() == []


async def test_a_clean_close_saves_every_commit_and_marks_clean(tmp_path: Path) -> None:
    async with open_store(tmp_path / "state") as store:
        await store.commit(_upsert("etl"))
        db_path = Path(store.path)
        assert marker_path(db_path).read_bytes() == b"dirty\n"
    assert marker_path(db_path).read_bytes() == b"clean\n"
    assert not wal_path(db_path).exists() or wal_path(db_path).stat().st_size == 0
    wal_path(db_path).unlink(missing_ok=True)  # losing it now loses nothing
    async with open_store(tmp_path / "state", readonly=True) as store:
        assert [dag.dag_id for dag in await store.list_dags()] == ["etl"]


async def test_the_writer_checkpoints_when_idle(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(writer, "IDLE_CHECKPOINT_DELAY", 0)
    async with open_store(tmp_path / "state") as store:
        await store.commit(_upsert("a"))
        # The writer is idle between the two commits, so it checkpoints before the second.
        await store.commit(_upsert("b"))
        assert store.statistics().checkpoints == 1
        assert marker_path(Path(store.path)).read_bytes() == b"dirty\n"  # "b" is unsaved


async def test_a_reader_that_holds_back_the_last_checkpoint_and_then_leaves_is_no_false_alarm(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Another process (`orchestrator runs list`, a test polling the store) reads while the store
    # closes: its snapshot makes the closing checkpoint busy, so the marker stays `dirty`. It
    # then leaves before the writer's connection closes, and SQLite, closing the database last,
    # checkpoints everything and deletes the `-wal` file. The next open took that for a lost log.
    async with open_store(tmp_path / "state") as store:
        await store.commit(_upsert("etl"))
        db_path = Path(store.path)
        reader = sqlite3.connect(
            f"file:{db_path}?mode=ro", uri=True, isolation_level=None, check_same_thread=False
        )
        reader.execute("BEGIN")
        assert reader.execute("SELECT count(*) FROM dags").fetchone() == (1,)  # a snapshot
        checkpoint = WalMarker.checkpoint

        def held_back(marker: WalMarker, connection: sqlite3.Connection) -> bool:
            saved = checkpoint(marker, connection)
            reader.close()  # the reader leaves once the checkpoint has met it
            return saved

        monkeypatch.setattr(WalMarker, "checkpoint", held_back)
    assert not wal_path(db_path).exists()  # SQLite checkpointed and deleted it on close
    async with open_store(tmp_path / "state") as store:
        assert [dag.dag_id for dag in await store.list_dags()] == ["etl"]
