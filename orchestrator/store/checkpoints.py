"""WAL checkpoints off the commit path: no commit waits for one.

SQLite checkpoints a WAL database by itself (`wal_autocheckpoint`, every 1,000 pages) inside
the COMMIT that passed the mark: that COMMIT also copies ~4 MB into the main file and fsyncs
it. With group commit, every caller waiting for the next group waited for it too: one stall
of 40-50 ms per ~2,000 webhook runs, most of the p99 at 64 senders (`bench/webhooks.py`).

So the writer connection does not checkpoint (`PRAGMA wal_autocheckpoint = 0`), and
`BackgroundCheckpoints` does the same work on a connection of its own, in that connection's
thread: a PASSIVE checkpoint copies what is committed without taking the write lock, so
commits go on meanwhile. The writer asks for one after each commit; one runs at most every
`interval` seconds, only while commits come. Durability is the WAL's fsync at COMMIT, as
before: a checkpoint only moves committed pages into the main file. At idle the writer still
checkpoints itself (TRUNCATE, then the WAL marker says `clean`: `walmark.py`).

A PASSIVE checkpoint never lets the WAL start over: SQLite rewinds it only when a write
begins with every frame copied, and under a steady stream of commits the next one is always
there first. So the WAL grew for as long as commits kept coming (590 MB in 19 s of 1,000-task
runs), and each COMMIT's fsync also had to write the file's new size: 0.30 ms against 0.23 in
place. After each background checkpoint that was not held back, the writer's own thread runs
a RESTART checkpoint before its next transaction (`restart_wal`): it copies only what was
committed since (a few transactions) and the next commit writes from the WAL's start again,
over blocks already there. `journal_size_limit` then cuts a WAL a burst left large back to
`WAL_SIZE_LIMIT` bytes.
"""

from __future__ import annotations

import logging
import sqlite3

import aiosqlite
import anyio

from orchestrator.store.connection import BUSY_TIMEOUT_MS

logger = logging.getLogger("orchestrator.store")

#: Seconds between two background checkpoints while commits keep coming.
CHECKPOINT_INTERVAL = 0.5
#: Bytes a WAL is cut back to when it starts over (`PRAGMA journal_size_limit`).
WAL_SIZE_LIMIT = 64 * 1024 * 1024


class BackgroundCheckpoints:
    """Runs PASSIVE checkpoints on `connection` (`connect_checkpointer`) beside the writer.

    `run` it in the store's task group. `lock` is held during each checkpoint: the writer's
    own idle checkpoint takes it too, so the two never meet (a checkpoint finding another
    under way gives up, and the WAL marker would stay `dirty` until the next idle moment).
    """

    def __init__(self, connection: aiosqlite.Connection, *, interval: float | None = None) -> None:
        self._connection = connection
        self._interval = CHECKPOINT_INTERVAL if interval is None else interval
        self._wanted = anyio.Event()
        self._scope = anyio.CancelScope()
        self.lock = anyio.Lock()
        self.checkpoints = 0
        # Set in the loop, read and reset in the writer's thread: a RESTART is worth running.
        self.restart_due = False
        self._failing: str | None = None  # the error of the last checkpoint, if it failed

    def committed(self) -> None:
        """The writer committed: a checkpoint is due (at most one per interval runs)."""
        self._wanted.set()

    def stop(self) -> None:
        self._scope.cancel()

    async def run(self) -> None:
        """Checkpoint after commits until `stop`."""
        with self._scope:
            while True:
                await self._wanted.wait()
                self._wanted = anyio.Event()
                # Shielded: a stop mid-checkpoint waits for it, so the writer's last checkpoint
                # at close never meets this one still running in the connection's thread.
                with anyio.CancelScope(shield=True):
                    await self.once()
                await anyio.sleep(self._interval)  # commits meanwhile wait for the next

    async def once(self) -> None:
        """One checkpoint now. It never raises: a full disk (the main file cannot grow) or an
        I/O error loses nothing, as the commits stay in the WAL, and the next commit asks again.
        (It ran in the store's task group: its error took the store down, and the daemon.)"""
        async with self.lock:
            try:
                busy, frames, _ = await checkpoint(self._connection)
            except sqlite3.Error as error:
                if str(error) != self._failing:  # once, not every half second while it lasts
                    logger.warning("a background checkpoint failed, tried again later: %s", error)
                self._failing, self.restart_due = str(error), False
                return
            finally:
                self.checkpoints += 1
        if self._failing is not None:
            logger.info("background checkpoints work again")
            self._failing = None
        self.restart_due = not busy and frames > 0


async def checkpoint(connection: aiosqlite.Connection) -> tuple[int, int, int]:
    """One PASSIVE checkpoint: (1 if it was blocked, frames in the WAL, frames copied).

    PASSIVE takes no write lock and waits for nobody: what a reader still needs, or what is
    committed meanwhile, is copied next time.
    """
    rows = list(await connection.execute_fetchall("PRAGMA wal_checkpoint(PASSIVE)"))
    busy, frames, copied = rows[0]
    return int(busy), int(frames), int(copied)


def restart_wal(connection: sqlite3.Connection) -> None:
    """Copy what the last background checkpoint left and let the next commit start the WAL
    over (blocking: in the writer connection's thread, between its transactions).

    It waits for no reader: one still reading frames makes it a PASSIVE checkpoint, and the
    WAL starts over after a later one. A failure (a full disk) only leaves the WAL growing.
    """
    try:
        checkpoint_without_waiting(connection, "RESTART")
    except sqlite3.Error as error:
        logger.warning("the write-ahead log could not be restarted: %s", error)


def checkpoint_without_waiting(connection: sqlite3.Connection, mode: str) -> tuple[int, int, int]:
    """`PRAGMA wal_checkpoint(mode)` with the busy timeout at 0: (busy, frames, copied).

    A checkpoint that waited for readers would hold up every commit queued behind it.
    """
    connection.execute("PRAGMA busy_timeout = 0")
    try:
        rows = connection.execute(f"PRAGMA wal_checkpoint({mode})").fetchall()
    finally:
        connection.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    busy, frames, copied = rows[0] if rows else (1, 0, 0)
    return int(busy), int(frames), int(copied)
