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
"""

from __future__ import annotations

import aiosqlite
import anyio

#: Seconds between two background checkpoints while commits keep coming.
CHECKPOINT_INTERVAL = 0.5


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
                    async with self.lock:
                        await checkpoint(self._connection)
                self.checkpoints += 1
                await anyio.sleep(self._interval)  # commits meanwhile wait for the next


async def checkpoint(connection: aiosqlite.Connection) -> tuple[int, int, int]:
    """One PASSIVE checkpoint: (1 if it was blocked, frames in the WAL, frames copied).

    PASSIVE takes no write lock and waits for nobody: what a reader still needs, or what is
    committed meanwhile, is copied next time.
    """
    rows = list(await connection.execute_fetchall("PRAGMA wal_checkpoint(PASSIVE)"))
    busy, frames, copied = rows[0]
    return int(busy), int(frames), int(copied)
