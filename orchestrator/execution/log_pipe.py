"""The pipe that carries a worker's fds 1 and 2 to a try's capped log, and the thread reading it.

A task, its C extensions and every subprocess it starts write to fds 1 and 2 directly, so no
Python-level wrapper can hold them to `task_log_max_bytes`; a pipe can. Each try gets a new
pipe; its write end becomes fds 1 and 2, and one reader thread per worker copies what arrives
into the try's `CappedLog`.

The reader is started once and waits in one `epoll` for whichever pipe is current; a try
registers its pipe there and, at its end, takes the pipe back and copies what is left itself.
So a try that prints nothing never wakes the reader: no thread hand-over per try (a thread
started per try cost about 0.2 ms, a queue hand-over to a waiting one about 0.1 ms).

The try ends when the task's own code returns, not when the pipe closes: a background child
may hold the write end for hours, or write without end. So the worker points fds 1 and 2
back, then takes what the pipe holds (one pipe's worth at most) and closes the read end; the
child is killed with the try's other leftovers. A log that cannot be written (a full disk)
loses that output, but the pipe is still drained, so the task never blocks on its output.
"""

from __future__ import annotations

import fcntl
import os
import select
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress

from orchestrator.execution.capped_log import CappedLog

_READ_SIZE = 65536


class LogPipe:
    """Per try, a pipe into a capped log; one reader thread for all the tries of a worker."""

    def __init__(self) -> None:
        self._epoll = select.epoll()
        # Held while a chunk goes from the pipe to the log, so a try's end sees it whole.
        self._lock = threading.Lock()
        self._current: _Try | None = None
        self._reader: threading.Thread | None = None

    @contextmanager
    def into(self, log: CappedLog) -> Iterator[int]:
        """Yield the write end of a new pipe whose output lands in `log`.

        Takes `log` over and closes it. The caller points fds 1 and 2 at the write end, closes
        it, and points them back before the block ends; by its end, the log has all that was
        sent.
        """
        if self._reader is None:
            self._reader = threading.Thread(target=self._serve, name="log-pipe", daemon=True)
            self._reader.start()
        read_end, write_end = os.pipe()
        os.set_blocking(read_end, False)
        one_try = _Try(read_end, log)
        self._current = one_try
        self._epoll.register(read_end, select.EPOLLIN)
        try:
            # A copy for fds 1 and 2: this write end stays open until the pipe is taken back,
            # so pointing them back does not wake the reader with an end of file.
            yield os.dup(write_end)
        finally:
            with self._lock:
                self._current = None
                if not one_try.ended:
                    self._epoll.unregister(read_end)
            os.close(write_end)
            one_try.finish()

    def _serve(self) -> None:
        while True:
            events = self._epoll.poll()
            with self._lock:
                one_try = self._current
                if one_try is not None and any(fd == one_try.read_end for fd, _ in events):
                    if one_try.copy() == 0:  # every writer closed it: nothing more comes
                        self._epoll.unregister(one_try.read_end)
                        one_try.ended = True


class _Try:
    """One try's pipe and its log."""

    def __init__(self, read_end: int, log: CappedLog) -> None:
        self.read_end = read_end
        self.log = log
        self.ended = False  # the pipe reached its end of file

    def copy(self, most: int = _READ_SIZE) -> int | None:
        """Copy up to `most` bytes from the pipe to the log: how many; 0 at its end of file.

        None if there was nothing to read (yet).
        """
        try:
            chunk = os.read(self.read_end, most)
        except BlockingIOError:
            return None
        with suppress(OSError):  # the log cannot take it (a full disk): the output is lost
            self.log.write(chunk)
        return len(chunk)

    def finish(self) -> None:
        """Copy what is left in the pipe, then close it and the log."""
        # At most one pipe's worth: a background child writing without end must not keep
        # the try going. What the pipe held when fds 1 and 2 were pointed back fits in it.
        left = fcntl.fcntl(self.read_end, fcntl.F_GETPIPE_SZ)
        while left > 0 and (copied := self.copy(min(left, _READ_SIZE))):
            left -= copied
        os.close(self.read_end)
        with suppress(OSError):
            self.log.close()
