"""The single writer, with group commit: batches that arrive together share one transaction.

Callers hand their batch to `commit` and wait. The writer connection's own thread commits
batches in groups, one `BEGIN IMMEDIATE` transaction each (`grouptransaction.py`: a failing
batch is undone alone and its caller gets the error), and answers a group's callers only
after its one `COMMIT` is durable. A batch that finds the thread idle goes at once, alone;
batches that come while a group is being committed wait, and go as the next group once that
group's callers have resumed, with whatever those commit next. Under load, many batches pay
for one fsync; alone, a batch pays for its own, as it would without the queue.

The thread owns the transaction, not a task in the event loop: the loop hands a group over
with no wake-up of its own, and the thread answers a whole group with one
`call_soon_threadsafe`. With a writer task in the loop, a lone commit cost three or four loop
iterations (waking the task, its trip to the thread, waking the callers) and twice the loop's
CPU; now it costs two: the answer, and the callers resuming (`bench/overhead_profile.py
chain_1000`, one commit a task: 8.06 -> 6.05 iterations a task).

When no batch has come for `idle_checkpoint_delay` seconds after a commit, `run` checkpoints:
the commits move from the `-wal` file into the main file, so a lost `-wal` file loses as
little as possible (see `walmark.py`, which also marks every commit beforehand). Batches that
come meanwhile wait for the checkpoint, as they would behind a transaction.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from contextlib import nullcontext
from functools import partial

import aiosqlite
import anyio

from orchestrator.errors import StoreError
from orchestrator.store.base import StoreStatistics, WriteBatch
from orchestrator.store.checkpoints import BackgroundCheckpoints, restart_wal
from orchestrator.store.connection import post_to_connection_thread, run_in_connection_thread
from orchestrator.store.grouptransaction import QueuedBatch, commit_group, fail_group
from orchestrator.store.walmark import WalMarker

#: Seconds without a commit after which the writer checkpoints the WAL into the main file.
IDLE_CHECKPOINT_DELAY = 1.0


class GroupCommitWriter:
    """Owns the writer connection; `run` it in a task group for idle checkpoints and `close`."""

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
        # Shared with the connection's thread, under `_lock`: whether a group is on its way to
        # the thread or in it (the thread clears it), and whether `run` was cancelled (then the
        # thread fails what it has not begun).
        self._lock = threading.Lock()
        self._group_in_thread = False
        self._abandoned = False
        # The loop's side only.
        self._queued: list[QueuedBatch] = []  # held back: the next group handed over
        self._closed = False
        self._held = False  # an idle checkpoint runs: batches queue and are not handed over
        self._waking = False  # a group's callers are resuming: what they commit goes together
        self._outstanding = 0  # batches handed to `commit` and not yet answered
        self._last_answer = 0.0  # time.monotonic() of the last answer
        self._unsaved = False  # committed since the last complete checkpoint
        self._became_unsaved = anyio.Event()
        self._next_answer: anyio.Event | None = None  # for `run`, waiting for the thread
        self._run_scope = anyio.CancelScope()
        self._checkpoints = 0
        # Counted in the thread, before each answer.
        self._transactions = 0
        self._batches = 0
        self._transaction_seconds = 0.0

    async def commit(self, batch: WriteBatch) -> None:
        """Queue `batch`, wait until it is durable, and raise its `StoreError` if it failed."""
        if not batch:
            return
        queued = QueuedBatch(batch, asyncio.get_running_loop().create_future())
        self._queue(queued)
        # Shielded: a caller cancelled mid-commit still waits for the outcome (its batch may
        # already be in the transaction), so its in-memory view never disagrees with the store.
        with anyio.CancelScope(shield=True):
            await queued.answered
        if queued.error is not None:
            raise queued.error

    def statistics(self) -> StoreStatistics:
        return StoreStatistics(
            transactions=self._transactions,
            batches=self._batches,
            checkpoints=self._checkpoints,
            transaction_seconds=self._transaction_seconds,
        )

    def close(self) -> None:
        """Accept no more batches; `run` waits until those already queued are committed."""
        self._closed = True
        self._run_scope.cancel()

    async def run(self) -> None:
        """Checkpoint when commits pause, until `close`; return once every caller is answered."""
        try:
            with self._run_scope:
                while True:
                    await self._became_unsaved.wait()
                    await self._until_idle()
                    with anyio.CancelScope(shield=True):
                        await self._checkpoint_idle()
        finally:
            with anyio.CancelScope(shield=True):
                await self._answer_all()

    async def checkpoint(self) -> None:
        """Move every commit into the main file now, if readers let it (at idle and on close).

        A checkpoint that fails (a full disk, an I/O error) loses nothing: the commits stay in
        the `-wal` file and the marker stays `dirty`; the next idle moment tries again.
        """
        apart = nullcontext() if self._background is None else self._background.lock
        try:
            async with apart:
                saved = await run_in_connection_thread(self._connection, self._marker.checkpoint)
        except (sqlite3.Error, OSError, ValueError):  # ValueError: aiosqlite's "closed"
            saved = False
        self._unsaved = not saved
        self._checkpoints += saved

    # -- the loop's side ------------------------------------------------------------------------

    def _queue(self, queued: QueuedBatch) -> None:
        """Hand the batch to the thread, or leave it for the group after the one under way."""
        if self._closed:
            raise StoreError(f"The store at {self._db_path} is closed; the batch was not applied.")
        self._outstanding += 1
        with self._lock:
            self._queued.append(queued)
            if self._group_in_thread or self._held or self._waking:
                return
            group, self._queued = self._queued, []
            self._group_in_thread = True
        self._hand_over(group)

    def _hand_over_queued(self) -> None:
        """Hand over what queued while held back, unless a group is under way or still held."""
        with self._lock:
            if self._group_in_thread or self._held or self._waking or not self._queued:
                return
            group, self._queued = self._queued, []
            self._group_in_thread = True
        self._hand_over(group)

    def _hand_over(self, group: list[QueuedBatch]) -> None:
        try:
            post_to_connection_thread(self._connection, partial(self._commit_and_answer, group))
        except ValueError:  # the connection was closed under the writer, which was not told
            with self._lock:
                self._group_in_thread = False
            fail_group(group, self._never_committed())
            self._answered(group, 0)

    def _never_committed(self) -> str:
        return (
            f"The store at {self._db_path} closed before this batch was committed; "
            "it was not applied."
        )

    def _answered(self, group: list[QueuedBatch], committed: int) -> None:
        """The thread is done with `group` (called in the loop): wake its callers."""
        self._last_answer = time.monotonic()
        self._outstanding -= len(group)
        if committed:
            if self._background is not None:
                self._background.committed()
            if not self._unsaved:
                self._unsaved = True
                self._became_unsaved.set()
        if self._next_answer is not None:
            self._next_answer.set()
            self._next_answer = None
        for queued in group:
            if not queued.answered.done():  # a caller's own loop cancelled it
                queued.answered.set_result(None)
        if not self._waking:
            # The callers resume in the loop's next iteration, and this runs right after them:
            # what they commit then makes one group, where the first would have gone alone.
            self._waking = True
            asyncio.get_running_loop().call_soon(self._woken)

    def _woken(self) -> None:
        self._waking = False
        self._hand_over_queued()

    async def _wait_for_next_answer(self) -> None:
        self._next_answer = anyio.Event()
        await self._next_answer.wait()

    async def _until_idle(self) -> None:
        """Return once no batch has been queued or answered for `idle_checkpoint_delay` s.

        Under steady commits this wakes once a delay (or once a group), not once a commit.
        """
        while True:
            if self._outstanding:
                await self._wait_for_next_answer()
                continue
            remaining = self._last_answer + self._idle_checkpoint_delay - time.monotonic()
            if remaining <= 0:
                return
            await anyio.sleep(remaining)

    async def _checkpoint_idle(self) -> None:
        self._held = True  # set before any await: no batch is handed over until we are done
        try:
            await self.checkpoint()
        finally:
            self._held = False
            self._unsaved = False  # after a failure, wait for the next commit to try again
            self._became_unsaved = anyio.Event()
            self._hand_over_queued()

    async def _answer_all(self) -> None:
        """Refuse new batches; unless closed cleanly, fail those not begun; await the rest."""
        if not self._closed:
            self._closed = True
            with self._lock:
                self._abandoned = True
        while self._outstanding:
            await self._wait_for_next_answer()

    # -- the connection's thread ----------------------------------------------------------------

    def _commit_and_answer(self, group: list[QueuedBatch], connection: sqlite3.Connection) -> None:
        """Commit `group`, then answer it (in the thread).

        What queued meanwhile is handed over by the loop once the answered callers have
        resumed (`_woken`), with what they commit then: taken here at once, it went as one
        group and the callers' as the next, two transactions (and fsyncs) each round.
        """
        background = self._background
        if background is not None and background.restart_due:
            background.restart_due = False
            restart_wal(connection)
        committed = self._commit_or_abandon(connection, group)
        with self._lock:
            self._group_in_thread = False
        self._answer(group, committed)

    def _commit_or_abandon(self, connection: sqlite3.Connection, group: list[QueuedBatch]) -> int:
        if self._abandoned:
            fail_group(group, self._never_committed())
            return 0
        began = time.perf_counter()
        committed = commit_group(connection, group, self._marker, self._db_path)
        self._transaction_seconds += time.perf_counter() - began
        self._transactions += committed > 0
        self._batches += committed
        return committed

    def _answer(self, group: list[QueuedBatch], committed: int) -> None:
        """One wake-up of the loop for the whole group."""
        loop = group[0].answered.get_loop()
        try:
            loop.call_soon_threadsafe(self._answered, group, committed)
        except RuntimeError:
            pass  # the loop is closed: nobody waits any more
