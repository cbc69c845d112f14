"""The single writer, with group commit: batches that arrive together share one transaction.

Callers hand their batch to `commit` and wait. The writer takes everything queued at that
moment, opens one `BEGIN IMMEDIATE` transaction, applies each batch inside its own
`SAVEPOINT` (a failing batch is rolled back alone and its caller gets the error), and wakes
the callers only after the one `COMMIT` is durable. Under load, many batches pay for one
fsync; alone, a batch pays for its own, as it would without the queue.

A group's whole transaction (BEGIN, every statement, COMMIT) runs in one trip to the
connection's thread: awaited one by one, its statements left the event loop waiting on that
thread for half of a 1,000-task chain. Savepoints are taken lazily: a group is first tried as
a whole, and only if one of its batches fails is it rolled back and replayed with a savepoint
per batch. The outcome is the same; the common path saves two statements per batch.

When no batch has come for `idle_checkpoint_delay` seconds after a commit, the writer
checkpoints: the commits move from the `-wal` file into the main file, so a lost `-wal` file
loses as little as possible (see `walmark.py`, which also marks every commit beforehand).
"""

from __future__ import annotations

import math
import sqlite3
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from functools import partial

import aiosqlite
import anyio

from orchestrator.errors import StoreError
from orchestrator.store.base import StoreStatistics, WriteBatch
from orchestrator.store.checkpoints import BackgroundCheckpoints
from orchestrator.store.connection import (
    corrupted_error,
    is_corruption,
    run_in_connection_thread,
)
from orchestrator.store.walmark import WalMarker
from orchestrator.store.writes import apply_op

#: Seconds without a commit after which the writer checkpoints the WAL into the main file.
IDLE_CHECKPOINT_DELAY = 1.0


@dataclass(eq=False)
class _Pending:
    """A batch waiting for the writer, and where the writer puts the outcome."""

    batch: WriteBatch
    done: anyio.Event = field(default_factory=anyio.Event)
    error: StoreError | None = None


class GroupCommitWriter:
    """Owns the writer connection; `run` must be running (in a task group) for commits to land."""

    def __init__(
        self,
        connection: aiosqlite.Connection,
        db_path: str,
        marker: WalMarker,
        background: BackgroundCheckpoints | None = None,
        *,
        idle_checkpoint_delay: float | None = None,
    ) -> None:
        self._connection = connection
        self._db_path = db_path
        self._marker = marker
        self._idle_checkpoint_delay = (
            IDLE_CHECKPOINT_DELAY if idle_checkpoint_delay is None else idle_checkpoint_delay
        )
        self._background = background  # told of each commit; its lock keeps us apart
        self._unsaved = False  # committed since the last complete checkpoint
        self._checkpoints = 0
        # Unbounded: every queued batch has a caller waiting on it, so callers bound the queue.
        self._send, self._receive = anyio.create_memory_object_stream[_Pending](math.inf)
        self._transactions = 0
        self._batches = 0
        self._transaction_seconds = 0.0

    async def commit(self, batch: WriteBatch) -> None:
        """Queue `batch`, wait until it is durable, and raise its `StoreError` if it failed."""
        if not batch:
            return
        pending = _Pending(batch)
        try:
            self._send.send_nowait(pending)
        except (anyio.ClosedResourceError, anyio.BrokenResourceError):
            raise StoreError(
                f"The store at {self._db_path} is closed; the batch was not applied."
            ) from None
        # Shielded: a caller cancelled mid-commit still waits for the outcome (its batch may
        # already be in the transaction), so its in-memory view never disagrees with the store.
        with anyio.CancelScope(shield=True):
            await pending.done.wait()
        if pending.error is not None:
            raise pending.error

    def statistics(self) -> StoreStatistics:
        return StoreStatistics(
            transactions=self._transactions,
            batches=self._batches,
            checkpoints=self._checkpoints,
            transaction_seconds=self._transaction_seconds,
        )

    def close(self) -> None:
        """Accept no more batches; `run` commits those already queued, then returns."""
        self._send.close()

    async def run(self) -> None:
        """Commit groups of queued batches until `close`; answer every caller, even if cancelled."""
        try:
            while (first := await self._receive_or_checkpoint()) is not None:
                group = [first, *self._take_queued()]
                # Shielded: a group is finished (or rolled back) before a cancel takes effect.
                with anyio.CancelScope(shield=True):
                    await self._commit_group(group)
        finally:
            self._abandon_queued()

    async def checkpoint(self) -> None:
        """Move every commit into the main file now, if readers let it (at idle and on close).

        A checkpoint that fails (a full disk, an I/O error) loses nothing: the commits stay in
        the `-wal` file and the marker stays `dirty`; the next idle moment tries again.
        """
        apart = nullcontext() if self._background is None else self._background.lock
        try:
            async with apart:
                saved = await self._marker.checkpoint(self._connection)
        except (sqlite3.Error, OSError):
            saved = False
        self._unsaved = not saved
        self._checkpoints += saved

    async def _receive_or_checkpoint(self) -> _Pending | None:
        """The next batch (None once closed), checkpointing first if the wait grows long."""
        if self._unsaved:
            with anyio.move_on_after(self._idle_checkpoint_delay):
                return await self._receive_next()
            with anyio.CancelScope(shield=True):
                await self.checkpoint()
            self._unsaved = False  # after a failure, wait for the next commit to try again
        return await self._receive_next()

    async def _receive_next(self) -> _Pending | None:
        try:
            return await self._receive.receive()
        except anyio.EndOfStream:
            return None

    def _take_queued(self) -> list[_Pending]:
        queued: list[_Pending] = []
        while True:
            try:
                queued.append(self._receive.receive_nowait())
            except (anyio.WouldBlock, anyio.EndOfStream):
                return queued

    def _abandon_queued(self) -> None:
        """Fail what the writer will never commit, then refuse new batches."""
        for pending in self._take_queued():
            pending.error = StoreError(
                f"The store at {self._db_path} closed before this batch was committed; "
                "it was not applied."
            )
            pending.done.set()
        self._receive.close()

    async def _commit_group(self, group: list[_Pending]) -> None:
        began = time.perf_counter()
        try:
            # One trip to the connection's thread for the whole transaction: BEGIN, every
            # statement of every batch, the WAL marker, COMMIT.
            committed = await run_in_connection_thread(
                self._connection, partial(self._commit_in_thread, group)
            )
            self._count_committed(committed)
        except Exception as error:
            await self._rollback()
            self._fail_group(group, error)
        finally:
            self._transaction_seconds += time.perf_counter() - began
            for pending in group:
                pending.done.set()

    def _commit_in_thread(self, group: list[_Pending], connection: sqlite3.Connection) -> int:
        """Commit the group (in the connection's thread); return how many batches landed."""
        committed = self._commit_all_or_nothing(connection, group)
        if committed is None:
            return self._commit_in_savepoints(connection, group)
        return committed

    def _commit_all_or_nothing(
        self, connection: sqlite3.Connection, group: list[_Pending]
    ) -> int | None:
        """Commit the group with no savepoints; None (rolled back) to replay it batch by batch.

        Batches nearly always succeed, and savepoints cost two more statements per batch, so
        they are paid for only once one has failed. A batch alone needs none: its failure is
        the outcome, and undoing it is the rollback.
        """
        connection.execute("BEGIN IMMEDIATE")
        for pending in group:
            if not _apply(connection, pending):
                connection.execute("ROLLBACK")
                return 0 if len(group) == 1 else None
        self._marker.before_commit()
        connection.execute("COMMIT")
        return len(group)

    def _commit_in_savepoints(self, connection: sqlite3.Connection, group: list[_Pending]) -> int:
        """Apply each batch in its own savepoint, so a failing one is undone alone."""
        connection.execute("BEGIN IMMEDIATE")
        applied = 0
        for pending in group:
            connection.execute("SAVEPOINT batch")
            if _apply(connection, pending):
                applied += 1
            else:
                connection.execute("ROLLBACK TO batch")
            connection.execute("RELEASE batch")
        if applied:
            self._marker.before_commit()
        connection.execute("COMMIT" if applied else "ROLLBACK")
        return applied

    def _count_committed(self, batches: int) -> None:
        if batches and self._background is not None:
            self._background.committed()
        self._unsaved = self._unsaved or batches > 0
        self._transactions += batches > 0
        self._batches += batches

    async def _rollback(self) -> None:
        try:
            await self._connection.execute("ROLLBACK")
        except sqlite3.Error:
            pass  # SQLite already rolled back (as it does on some I/O errors): nothing to undo

    def _fail_group(self, group: list[_Pending], error: Exception) -> None:
        """The transaction failed as a whole: every caller not already failed learns why."""
        for pending in group:
            if pending.error is None:
                pending.error = self._transaction_error(error)

    def _transaction_error(self, error: Exception) -> StoreError:
        if is_corruption(error):
            failure: StoreError = corrupted_error(self._db_path, str(error))
        else:
            failure = StoreError(
                f"The write transaction on {self._db_path} failed ({error}); "
                "none of its batches were applied."
            )
        failure.__cause__ = error
        return failure


def _apply(connection: sqlite3.Connection, pending: _Pending) -> bool:
    """Run one batch's writes; on failure record its error and return False (not undone)."""
    pending.error = None  # a replayed batch may succeed where it failed the first time
    ops = pending.batch.ops
    for index, op in enumerate(ops):
        try:
            apply_op(connection, op)
        except Exception as error:
            pending.error = _batch_error(error, f"{op.kind} (write {index + 1} of {len(ops)})")
            return False
    return True


def _batch_error(error: Exception, where: str) -> StoreError:
    """A batch's own failure: our `StoreError`s already say what happened; wrap the rest."""
    if isinstance(error, StoreError):
        return error
    failure = StoreError(f"A write batch failed at {where} and was not applied: {error}")
    failure.__cause__ = error
    return failure
