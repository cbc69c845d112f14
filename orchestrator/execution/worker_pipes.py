"""The engine's ends of a worker's stdin and stdout: jobs written straight in, replies by line.

The pipes are ours, made before the worker is spawned, rather than the process's streams:
a job is one `os.write` to an idle worker's empty pipe, where anyio's stream sent it through
asyncio's writer and then yielded a turn of the loop; a reply is read with `os.read` once the
pipe is readable, without a stream reader and a buffered stream above it. About a tenth of
the loop's time for a no-op try on a worker went to those layers.
"""

from __future__ import annotations

import os
import select
from contextlib import suppress

import anyio

_READ_SIZE = 65536


class PipeClosed(Exception):
    """The worker's end of the pipe is closed: it exited, or it is dying."""


class LineTooLong(Exception):
    """A reply grew past its limit without a newline."""


class WorkerPipes:
    """Our end of a worker's stdin (`send`) and of its stdout (`receive_line`)."""

    def __init__(self) -> None:
        self._worker_stdin, self._requests = os.pipe()
        self._replies, self._worker_stdout = os.pipe()
        os.set_blocking(self._requests, False)
        os.set_blocking(self._replies, False)
        self._buffer = bytearray()

    def worker_ends(self) -> tuple[int, int]:
        """The fds the worker gets as its stdin and stdout."""
        return self._worker_stdin, self._worker_stdout

    def spawned(self) -> None:
        """Close the worker's ends here: only then does its death close the pipes for us."""
        for fd in (self._worker_stdin, self._worker_stdout):
            with suppress(OSError):
                os.close(fd)
        self._worker_stdin = self._worker_stdout = -1

    @property
    def replies(self) -> int:
        """The fd replies arrive on (non-blocking), to wait on until it is readable."""
        return self._replies

    async def send(self, data: bytes) -> None:
        """Write all of `data`; `BrokenPipeError` (an `OSError`) if the worker is gone."""
        view = memoryview(data)
        while view:
            try:
                view = view[os.write(self._requests, view) :]
            except BlockingIOError:  # the pipe is full: a job larger than its buffer
                await anyio.wait_writable(self._requests)

    def send_now(self, data: bytes) -> bool:
        """Write `data` whole now, if it is small enough to go in one atomic write; else False.

        An idle worker's pipe is empty, so such a write does not block; `OSError` (a broken
        pipe) if the worker is gone.
        """
        if len(data) > select.PIPE_BUF:
            return False
        try:
            os.write(self._requests, data)
        except BlockingIOError:
            return False
        return True

    async def receive_line(self, limit: int) -> bytes:
        """The next line, without its newline; `LineTooLong` past `limit`, `PipeClosed` at EOF."""
        while (line := self.take_line(limit)) is None:
            await anyio.wait_readable(self._replies)
        return line

    def take_line(self, limit: int) -> bytes | None:
        """`receive_line` without waiting: None until the whole line has arrived."""
        end = self._buffer.find(b"\n")
        while end < 0:
            if len(self._buffer) > limit:
                raise LineTooLong
            try:
                chunk = os.read(self._replies, _READ_SIZE)
            except BlockingIOError:
                return None
            except OSError:
                raise PipeClosed from None
            if not chunk:
                raise PipeClosed
            searched = len(self._buffer)
            self._buffer += chunk
            end = self._buffer.find(b"\n", searched)
        if end > limit:
            raise LineTooLong
        line = bytes(self._buffer[:end])
        del self._buffer[: end + 1]
        return line

    def close_requests(self) -> None:
        """End the worker's stdin: an idle worker exits when it sees it."""
        if self._requests >= 0:
            os.close(self._requests)
            self._requests = -1

    def close(self) -> None:
        self.spawned()
        self.close_requests()
        if self._replies >= 0:
            os.close(self._replies)
            self._replies = -1
