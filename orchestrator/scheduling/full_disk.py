"""Riding out a full disk: the engine holds its step until the store can commit it again.

A step's decisions are made in memory before its commit, so a commit that fails for want of
space cannot simply be dropped: the engine would believe what the store never recorded. It
is retried as it is, with a growing pause, until it lands. Meanwhile nothing is dispatched
(dispatch follows the commit), tries already running go on and their outcomes wait in the
inbox, health says "disk_full", and the daemon's log says so once (and again on recovery).
Nothing is lost: every state change is either committed or still waiting to be.
"""

from __future__ import annotations

import errno
import logging
import sqlite3
from collections.abc import Awaitable, Callable

import anyio

from orchestrator.errors import StoreError
from orchestrator.store.base import WriteBatch

logger = logging.getLogger("orchestrator.engine")

_Commit = Callable[[WriteBatch], Awaitable[None]]
_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EFBIG, errno.EDQUOT})
_FIRST_PAUSE = 0.5
_LONGEST_PAUSE = 30.0


def is_disk_full(error: BaseException | None) -> bool:
    """True if `error`, or what caused it, says the disk (or a quota, a file size cap) is full."""
    while error is not None:
        if isinstance(error, OSError) and error.errno in _FULL_ERRNOS:
            return True
        if isinstance(error, sqlite3.Error) and (
            getattr(error, "sqlite_errorcode", 0) & 0xFF == sqlite3.SQLITE_FULL
        ):
            return True
        error = error.__cause__ or error.__context__
    return False


class FullDiskWait:
    """Commits a batch, waiting out a full disk; `reason` is set while it waits."""

    def __init__(self) -> None:
        self.reason: str | None = None

    async def commit(self, store_commit: _Commit, batch: WriteBatch) -> None:
        pause = _FIRST_PAUSE
        while True:
            try:
                await store_commit(batch)
            except StoreError as error:
                if not is_disk_full(error):
                    raise
                self._report_full(error)
                await anyio.sleep(pause)  # a retry backoff while out of space, not a poll
                pause = min(pause * 2, _LONGEST_PAUSE)
                continue
            self._report_recovered()
            return

    def _report_full(self, error: StoreError) -> None:
        if self.reason is None:
            logger.error(
                "the disk is full: no task is dispatched until the store can commit again "
                "(it retries by itself; nothing is lost). %s",
                error,
            )
        self.reason = str(error)

    def _report_recovered(self) -> None:
        if self.reason is not None:
            logger.warning("the disk has room again: dispatching resumes")
            self.reason = None
