"""Open files: the limit raised at start, running out of them survived, and said calmly.

Every connection the daemon holds is an open file, and so is every log, pipe and database
handle. With the common soft limit of 1024, a few thousand idle clients used to end it: each
accept that failed with `EMFILE` logged a traceback (asyncio tries up to the whole backlog
per wake-up, so thousands a second), and the control socket's accept loop died of it and
took the daemon along. Here:

- `raise_open_file_limit` lifts the soft limit to the hard one at start-up, as nginx and
  systemd services do, so the default leaves room for thousands of connections;
- `out_of_descriptors` tells running out of files (or kernel memory for sockets) from other
  failures: an accept loop that sees it waits `ACCEPT_RETRY_SECONDS` and tries again (its
  listener's backlog holds the clients meanwhile), it never stops serving;
- `ThrottledLog` says so once, then at most once per interval with how many times it
  happened, so a flood cannot fill the disk with log lines.
"""

from __future__ import annotations

import errno
import logging
import resource
import time
from collections.abc import Callable

#: Seconds an accept loop waits after running out of files before it tries again (asyncio's
#: own choice for the same case); a wait, not a poll: no event says a file was closed.
ACCEPT_RETRY_SECONDS = 0.5
_EXHAUSTION = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})


def open_file_limit() -> int:
    """The soft limit on this process's open files (what `EMFILE` is measured against)."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return soft if soft != resource.RLIM_INFINITY else 1 << 20


def raise_open_file_limit() -> tuple[int, int]:
    """Lift the soft open-file limit to the hard one; returns (before, after).

    The hard limit is the ceiling an administrator set (systemd's `LimitNOFILE=`); the soft
    one is only a default that a server is expected to raise. A refusal keeps the old limit.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == hard:
        return soft, soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ValueError, OSError):
        return soft, soft
    return soft, hard


def out_of_descriptors(error: BaseException | None) -> bool:
    """True when `error` (or the error it was raised from) means no file or socket was left."""
    while error is not None:
        if isinstance(error, OSError) and error.errno in _EXHAUSTION:
            return True
        error = error.__cause__
    return False


class ThrottledLog:
    """A warning logged at most once per `interval` seconds, counting the ones held back.

    The first occurrence is logged at once; later ones within the interval are counted and
    reported with the next line that is logged ("... (37 more times since the last report)").
    """

    def __init__(
        self,
        logger: logging.Logger,
        *,
        interval: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._logger = logger
        self._interval = interval
        self._clock = clock
        self._next_at = float("-inf")
        self._held_back = 0

    def warning(self, message: str, *args: object) -> None:
        now = self._clock()
        if now < self._next_at:
            self._held_back += 1
            return
        if self._held_back:
            message += f" ({self._held_back} more times since the last report)"
        self._logger.warning(message, *args)
        self._next_at, self._held_back = now + self._interval, 0
