"""The WAL marker: a sidecar file that says whether the `-wal` file holds unsaved commits.

In WAL mode a commit lands in `orchestrator.db-wal` and reaches `orchestrator.db` only at the
next checkpoint. After an unclean stop, deleting the `-wal` file silently rolls the database
back to its last checkpoint, and SQLite cannot tell: the main file alone is a sound, older
database. `orchestrator.db-walmark` records, outside the WAL, whether such commits may exist:

- `dirty` is written and fsynced *before* the first commit after a complete checkpoint, while
  that commit holds the write lock (`BEGIN IMMEDIATE`), so no commit is ever in the WAL alone
  while the marker says `clean` — in this process or in any other writer;
- `clean` is written only after a complete `TRUNCATE` checkpoint, under the write lock and
  after seeing the `-wal` file empty, so no commit came between the checkpoint and the mark.

Hence "marker dirty and no `-wal` file" means commits may have been lost, and "clean" means
the main file holds every commit. Opening refuses the first case, before SQLite sees the
path (it would create an empty `-wal` and hide the loss). The one false alarm is another
SQLite program, not the orchestrator, closing the database last after a crash (SQLite
checkpoints and deletes the `-wal` on close): the recovery steps cover it. The writer itself
closing last is not one: SQLite may then save and delete a `-wal` that the writer's closing
checkpoint had to leave for a reader, and `after_close` marks that `clean`.

`enter_reader` opens a read-only connection where the `-shm` index cannot be created, which
is safe only while the `-wal` file holds no commits: this module's question too.
"""

from __future__ import annotations

import os
import shlex
import sqlite3
from contextlib import AsyncExitStack
from pathlib import Path

import aiosqlite
import anyio

from orchestrator.errors import StoreCorruptedError, StoreError
from orchestrator.store.checkpoints import checkpoint_without_waiting
from orchestrator.store.connection import cannot_open, connect_reader

_DIRTY = b"dirty\n"
_CLEAN = b"clean\n"  # the same length: an overwrite in place needs no new disk block


def marker_path(db_path: Path) -> Path:
    return db_path.with_name(f"{db_path.name}-walmark")


def wal_path(db_path: Path) -> Path:
    return db_path.with_name(f"{db_path.name}-wal")


def read_marker(db_path: Path) -> bytes:
    """The marker's content; `clean` when there is none (a new or older state directory)."""
    return _read_marker_file(str(marker_path(db_path)))


def _read_marker_file(path: str) -> bytes:
    # Plain descriptors rather than pathlib: the writer reads this before every commit.
    try:
        descriptor = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return _CLEAN
    try:
        return os.read(descriptor, 64)
    finally:
        os.close(descriptor)


def check_wal_not_lost(db_path: Path) -> None:
    """Raise `StoreCorruptedError` if the `-wal` file is gone while it held unsaved commits.

    Blocking file-system calls: run it in a worker thread, before any connection opens.
    """
    if db_path.is_file() and not wal_path(db_path).exists() and read_marker(db_path) == _DIRTY:
        raise lost_wal_error(db_path)


def lost_wal_error(db_path: Path) -> StoreCorruptedError:
    """The refusal for a missing `-wal` file, with the ways to recover spelled out."""
    wal, marker = wal_path(db_path), marker_path(db_path)
    return StoreCorruptedError(
        f"The database {db_path} was not closed cleanly and its write-ahead log {wal} is "
        "missing, so the commits it held since the last checkpoint (runs, task states, "
        "events) are not in the database. The orchestrator will not use it and has written "
        "nothing to it. With every orchestrator stopped: if you still have the -wal file "
        f"(a backup, the trash), put it back as {wal} and start again. Otherwise restore "
        "the state directory from a backup, or accept the loss and continue from the last "
        f"checkpoint: `rm {shlex.quote(str(marker))}`, then `orchestrator db check`. "
        "(If another SQLite program opened the database since the crash, it saved the "
        "commits into the database before removing the log: then nothing is lost, and the "
        "same `rm` is all you need.)"
    )


class WalMarker:
    """The writer's side: mark `dirty` before a commit, `clean` after a complete checkpoint."""

    def __init__(self, db_path: Path) -> None:
        self._db_path = db_path
        self._path = marker_path(db_path)
        self._path_text = str(self._path)
        self._left_wal = False  # the last checkpoint could not mark clean, with a -wal there

    def before_commit(self) -> None:
        """Call under the write lock, before COMMIT: make sure the marker says `dirty`.

        Blocking: called in the writer connection's thread, inside the transaction's one trip
        there. Read every time (a few microseconds from the page cache) because another
        process's writer may have marked it `clean` since; written and fsynced only on that
        change.
        """
        if _read_marker_file(self._path_text) != _DIRTY:
            self._write_durably(_DIRTY)

    def checkpoint(self, connection: sqlite3.Connection) -> bool:
        """Save every commit into the main file and mark `clean`; False if readers prevented it.

        Blocking: run it in the writer connection's thread, in one trip there, so that none of
        the writer's own transactions falls between its statements (one would find this
        `BEGIN` open, or the busy timeout at 0). The checkpoint does not wait for readers (busy
        timeout 0): a reader in the middle of a long read would otherwise hold up every commit
        queued behind it.
        """
        self._left_wal = wal_path(self._db_path).exists()
        if checkpoint_without_waiting(connection, "TRUNCATE")[0]:
            return False
        connection.execute("BEGIN IMMEDIATE")
        try:
            if wal_is_empty(self._db_path):  # nothing committed since the checkpoint
                self._path.write_bytes(_CLEAN)  # not fsynced: losing it only leaves `dirty`
                self._left_wal = False
                return True
            return False
        finally:
            connection.execute("ROLLBACK")

    def after_close(self) -> None:
        """Call once the writer's connection has closed, after its last `checkpoint`.

        That checkpoint may have found a reader (another process) and left the marker `dirty`.
        If the reader left before the close, SQLite, closing the database last, checkpointed
        every commit into the main file, fsynced it, and deleted the `-wal` file: a `-wal`
        there at the checkpoint and gone now went that way, so the marker may say `clean`.
        (Left `dirty`, the next open refused the store for a lost log.)
        """
        if self._left_wal and not wal_path(self._db_path).exists():
            self._path.write_bytes(_CLEAN)
        self._left_wal = False

    def _write_durably(self, content: bytes) -> None:
        created = not self._path.exists()
        descriptor = os.open(self._path, os.O_WRONLY | os.O_CREAT, 0o644)
        try:
            os.pwrite(descriptor, content, 0)
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
        if created:  # the new name must be durable too
            directory = os.open(self._path.parent, os.O_RDONLY)
            try:
                os.fsync(directory)
            finally:
                os.close(directory)


def wal_is_empty(db_path: Path) -> bool:
    """True when no `-wal` file holds commits (there is none, or it is empty)."""
    try:
        return wal_path(db_path).stat().st_size == 0
    except FileNotFoundError:
        return True


async def enter_reader(
    stack: AsyncExitStack, db_path: Path, synchronous: str
) -> aiosqlite.Connection:
    """A read-only connection, also where this process may not write (a read-only mount).

    SQLite reads a WAL database through the `-shm` index beside it, and a reader must create
    that file when no connection has the database open. Where it cannot, the main file is read
    as it is (`immutable=1`), but only when no `-wal` file holds commits: a writer keeps its
    `-wal` file for as long as it has the database open, so then none has, and the main file
    holds every commit. (A writer that starts meanwhile writes to its own new `-wal`; the main
    file changes only at a checkpoint, which a read taking milliseconds does not wait for but
    is unlikely to meet.) Reading the main file alone while the `-wal` holds commits would
    silently miss them: that is refused with what to do.
    """
    try:
        return await stack.enter_async_context(connect_reader(db_path, synchronous, check=True))
    except StoreError as error:
        if not cannot_open(error):
            raise
        if not await anyio.to_thread.run_sync(wal_is_empty, db_path):
            raise StoreError(
                f"The database {db_path} cannot be read from here: its write-ahead log "
                f"{wal_path(db_path)} holds commits, and reading them needs the index file "
                f"{db_path.name}-shm, which this process may not create in {db_path.parent}. "
                "Run it as a user who may write there, or once the file system is writable "
                "again."
            ) from error
    immutable = connect_reader(db_path, synchronous, check=True, immutable=True)
    return await stack.enter_async_context(immutable)
