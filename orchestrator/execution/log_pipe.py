"""The pipe that carries a worker's fds 1 and 2 to a try's capped log, and the thread reading it.

A task, its C extensions and every subprocess it starts write to fds 1 and 2 directly, so no
Python-level wrapper can hold them to `task_log_max_bytes`; a pipe can. Each try gets a new
pipe; its write end becomes fds 1 and 2, and one reader thread per worker, started on the
first capped try and reused after (a thread started per try would cost a few tenths of a
millisecond), copies what arrives into the try's `CappedLog`.

The try ends when the task's own code returns, not when the pipe closes: a background child
may hold the write end for hours. So the worker first points fds 1 and 2 back, then tells the
reader to stop; the reader takes what is already in the pipe and closes its end, and the
child is killed with the try's other leftovers. A log that cannot be written (a full disk)
loses that output, but the reader goes on draining, so the task never blocks on its output.
"""

from __future__ import annotations

import os
import queue
import select
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress

from orchestrator.execution.capped_log import CappedLog

_READ_SIZE = 65536


class LogPipe:
    """Per try, a pipe into a capped log; one reader thread for all the tries of a worker."""

    def __init__(self) -> None:
        self._tries: queue.SimpleQueue[_Try] = queue.SimpleQueue()
        self._finished: queue.SimpleQueue[BaseException | None] = queue.SimpleQueue()
        self._reader: threading.Thread | None = None

    @contextmanager
    def into(self, log_fd: int, max_bytes: int) -> Iterator[int]:
        """Yield the write end of a new pipe whose output lands in `log_fd`, held to `max_bytes`.

        Takes `log_fd` over. The caller points fds 1 and 2 at the write end, closes it, and
        points them back before the block ends; the block ends once the reader has finished.
        """
        if self._reader is None:
            self._reader = threading.Thread(target=self._serve, name="log-pipe", daemon=True)
            self._reader.start()
        log = CappedLog(log_fd, max_bytes)
        read_end, write_end = os.pipe()
        stop_read, stop_write = os.pipe()  # closing its write end stops the reader
        self._tries.put(_Try(read_end, stop_read, log))
        try:
            yield write_end
        finally:
            os.close(stop_write)
            error = self._finished.get()
            if error is not None:
                raise error

    def _serve(self) -> None:
        while True:
            one_try = self._tries.get()
            error: BaseException | None = None
            try:
                one_try.copy()
            except BaseException as caught:  # raised again in the worker's main thread
                error = caught
            one_try.close()
            self._finished.put(error)


class _Try:
    """One try's pipe, its stop signal and its log, as the reader thread sees them."""

    def __init__(self, read_end: int, stop_read: int, log: CappedLog) -> None:
        self.read_end = read_end
        self.stop_read = stop_read
        self.log = log

    def copy(self) -> None:
        """Copy the pipe into the log until told to stop; then take what the pipe still holds."""
        poller = select.poll()
        poller.register(self.read_end, select.POLLIN)
        poller.register(self.stop_read, select.POLLIN)
        while self.stop_read not in {fd for fd, _ in poller.poll()}:
            chunk = os.read(self.read_end, _READ_SIZE)
            if not chunk:  # every writer closed it: nothing more comes before the stop
                poller.unregister(self.read_end)
                continue
            _write(self.log, chunk)
        os.set_blocking(self.read_end, False)
        while chunk := _read_available(self.read_end):
            _write(self.log, chunk)

    def close(self) -> None:
        os.close(self.read_end)
        os.close(self.stop_read)
        with suppress(OSError):
            self.log.close()


def _write(log: CappedLog, chunk: bytes) -> None:
    with suppress(OSError):  # the log cannot take it (a full disk): the output is lost
        log.write(chunk)


def _read_available(fd: int) -> bytes:
    try:
        return os.read(fd, _READ_SIZE)
    except BlockingIOError:
        return b""
