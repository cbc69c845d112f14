"""One group's transaction, in the writer connection's thread: every batch, or each on its own.

A group is first tried as a whole, with no savepoints, and only if one of its batches fails
is it rolled back and replayed with a savepoint per batch: the failing batch is undone alone
and its caller gets the error. The outcome is the same; the common path saves two statements
per batch. The WAL marker is made `dirty` under the write lock, before `COMMIT`
(`walmark.py`). A transaction that fails as a whole (a refused `COMMIT`, a full disk, a
damaged file) fails every batch in it that had not already failed on its own.
"""

from __future__ import annotations

import asyncio
import sqlite3
from dataclasses import dataclass

from orchestrator.errors import StoreError
from orchestrator.store.base import WriteBatch
from orchestrator.store.connection import corrupted_error, is_corruption
from orchestrator.store.walmark import WalMarker
from orchestrator.store.writes import apply_op


@dataclass(eq=False, slots=True)
class QueuedBatch:
    """A batch waiting for the writer: `error` says how it ended once `answered` is done."""

    batch: WriteBatch
    answered: asyncio.Future[None]  # resolved in the caller's loop, never in the thread
    error: StoreError | None = None


def commit_group(
    connection: sqlite3.Connection, group: list[QueuedBatch], marker: WalMarker, db_path: str
) -> int:
    """Commit the group in one transaction; return how many batches landed (in the thread).

    Each batch that did not land has its `error` set.
    """
    try:
        committed = _commit_all_or_nothing(connection, group, marker)
        if committed is None:
            return _commit_in_savepoints(connection, group, marker)
        return committed
    except Exception as error:
        _rollback(connection)
        for queued in group:
            if queued.error is None:
                queued.error = _transaction_error(db_path, error)
        return 0


def fail_group(group: list[QueuedBatch], message: str) -> None:
    """Give every batch of a group that will never be committed the same error."""
    for queued in group:
        queued.error = StoreError(message)


def _commit_all_or_nothing(
    connection: sqlite3.Connection, group: list[QueuedBatch], marker: WalMarker
) -> int | None:
    """Commit the group with no savepoints; None (rolled back) to replay it batch by batch.

    Batches nearly always succeed, and savepoints cost two more statements per batch, so
    they are paid for only once one has failed. A batch alone needs none: its failure is
    the outcome, and undoing it is the rollback.
    """
    connection.execute("BEGIN IMMEDIATE")
    for queued in group:
        if not _apply(connection, queued):
            connection.execute("ROLLBACK")
            return 0 if len(group) == 1 else None
    marker.before_commit()
    connection.execute("COMMIT")
    return len(group)


def _commit_in_savepoints(
    connection: sqlite3.Connection, group: list[QueuedBatch], marker: WalMarker
) -> int:
    """Apply each batch in its own savepoint, so a failing one is undone alone."""
    connection.execute("BEGIN IMMEDIATE")
    applied = 0
    for queued in group:
        connection.execute("SAVEPOINT batch")
        if _apply(connection, queued):
            applied += 1
        else:
            connection.execute("ROLLBACK TO batch")
        connection.execute("RELEASE batch")
    if applied:
        marker.before_commit()
    connection.execute("COMMIT" if applied else "ROLLBACK")
    return applied


def _rollback(connection: sqlite3.Connection) -> None:
    try:
        connection.execute("ROLLBACK")
    except sqlite3.Error:
        pass  # SQLite already rolled back (as it does on some I/O errors): nothing to undo


def _apply(connection: sqlite3.Connection, queued: QueuedBatch) -> bool:
    """Run one batch's writes; on failure record its error and return False (not undone)."""
    queued.error = None  # a replayed batch may succeed where it failed the first time
    ops = queued.batch.ops
    for index, op in enumerate(ops):
        try:
            apply_op(connection, op)
        except Exception as error:
            queued.error = _batch_error(error, f"{op.kind} (write {index + 1} of {len(ops)})")
            return False
    return True


def _batch_error(error: Exception, where: str) -> StoreError:
    """A batch's own failure: our `StoreError`s already say what happened; wrap the rest."""
    if isinstance(error, StoreError):
        return error
    failure = StoreError(f"A write batch failed at {where} and was not applied: {error}")
    failure.__cause__ = error
    return failure


def _transaction_error(db_path: str, error: Exception) -> StoreError:
    if is_corruption(error):
        failure: StoreError = corrupted_error(db_path, str(error))
    else:
        failure = StoreError(
            f"The write transaction on {db_path} failed ({error}); "
            "none of its batches were applied."
        )
    failure.__cause__ = error
    return failure
