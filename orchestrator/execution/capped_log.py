"""A try's log held to `task_log_max_bytes`: its head, a marker, its most recent tail.

Two ways to get there, one layout:

- `CappedLog` holds the file under the cap *while the try runs*: bytes are appended as they
  come (so the file is always current, even after a `kill -9`) until the next write would
  pass the cap; then the middle is cut in place: everything after the head is replaced by the
  marker and the most recent half of the tail room, and appending goes on. Each cut rewrites
  at most half the tail room and frees as much, so a task printing without end costs about
  twice its output in writes and never more than `max_bytes` on disk.
- `cap_log` cuts a finished try's log (with what the engine appended, e.g. a timeout) once.

Either way the head is the first `max_bytes // 2` bytes and the marker sits right after it,
counting every byte cut so far: a later cut reads the count there and adds to it.
"""

from __future__ import annotations

import fcntl
import io
import logging
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from orchestrator.execution.log_files import open_log_fd

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer

logger = logging.getLogger("orchestrator.executor")

_CUT_MARKER = "\n[... {cut} bytes cut here: the log was over task_log_max_bytes ({limit}) ...]\n"
_MARKER_ROOM = 120  # the marker's length with any numbers, rounded up
_MARKER_PATTERN = re.compile(
    rb"\n\[\.\.\. (\d+) bytes cut here: the log was over task_log_max_bytes \(\d+\) \.\.\.\]\n"
)


class CappedLog(io.RawIOBase):
    """An open log that never grows past `max_bytes`; takes over `fd` (read-write, append).

    Blocking: write to it from the task's own thread or a reader thread, never the event loop.
    Wrap it in `io.BufferedWriter` and `io.TextIOWrapper` for text.
    """

    def __init__(self, fd: int, max_bytes: int, *, path: str = "") -> None:
        super().__init__()
        self._fd = fd
        self._path = path
        self.max_bytes = max_bytes
        self.open_error: OSError | None = None

    @classmethod
    def made_at_first_write(cls, log_path: str, max_bytes: int) -> CappedLog:
        """The log at `log_path`, created by its first write: a try that writes nothing
        leaves no file. If it cannot be created, what is written is lost and `open_error`
        says why: the caller fails the try with it once the try's code has returned."""
        return cls(-1, max_bytes, path=log_path)

    def _opened(self) -> int:
        if self._fd < 0 and self.open_error is None:
            try:
                self._fd = open_log_fd(self._path)
            except OSError as error:
                self.open_error = error
        return self._fd

    def writable(self) -> bool:
        return True

    def fileno(self) -> int:
        fd = self._opened()
        if self.open_error is not None:
            raise self.open_error
        return fd

    def write(self, data: ReadableBuffer) -> int:
        chunk = bytes(data)
        length = len(chunk)
        if self._fd < 0 and (not length or self._opened() < 0):
            return length  # nothing to make the log for; or it cannot be: `open_error` says why
        # Sized on every write, not counted: the engine may append to the same file meanwhile.
        size = os.fstat(self._fd).st_size
        if size + len(chunk) <= self.max_bytes:
            _write_all(self._fd, chunk)
            return length
        head = self.max_bytes // 2
        if size < head:  # the head is kept whole: fill it first
            _write_all(self._fd, chunk[: head - size])
            chunk, size = chunk[head - size :], head
        keep = (self.max_bytes - head - _MARKER_ROOM) // 2  # the other half is room to append
        with _positioned_writes(self._fd):
            _cut_middle(self._fd, size, self.max_bytes, keep, chunk)
        return length

    def close(self) -> None:
        if not self.closed and self._fd >= 0:
            os.close(self._fd)
        super().close()


def open_capped_log(fd: int, max_bytes: int) -> io.TextIOWrapper:
    """A text log over `fd` (read-write, append) that stays within `max_bytes`."""
    return _text(CappedLog(fd, max_bytes))


@contextmanager
def capped_log_made_at_first_write(log_path: str, max_bytes: int) -> Iterator[io.TextIOWrapper]:
    """A text log at `log_path`, within `max_bytes`, created by its first write.

    Closed at the block's end; then, if the log could not be made, raises the `OSError` that
    said so (output was written and lost), as opening it beforehand would have.
    """
    raw = CappedLog.made_at_first_write(log_path, max_bytes)
    with _text(raw) as log:
        yield log
    if raw.open_error is not None:
        raise raw.open_error


def _text(raw: CappedLog) -> io.TextIOWrapper:
    return io.TextIOWrapper(io.BufferedWriter(raw), encoding="utf-8", errors="backslashreplace")


def log_over_cap(log_path: str, max_bytes: int) -> bool:
    """Whether the log at `log_path` is past `max_bytes` and `cap_log` has work to do.

    One `stat`, cheap enough for the event loop: the log is in the state directory (on a local
    disk, as SQLite's WAL needs) and was just written, so its inode is cached. It saves a trip
    to a worker thread after every try, where the log nearly always fits already.
    """
    try:
        return os.stat(log_path).st_size > max_bytes
    except OSError:
        return False  # missing: nothing to cut (`cap_log` would leave it alone too)


def cap_log(log_path: str, max_bytes: int) -> int:
    """Cut a finished try's log to `max_bytes`, keeping its head and tail; the bytes cut.

    The middle goes, with a marker line in its place: the head says how the try started, the
    tail how it ended. Done in place (the file only shrinks), so it works on a full disk.
    Blocking: run it in a worker thread. A missing or unreadable log is left as it is.
    """
    try:
        with open(log_path, "r+b") as log:
            fd = log.fileno()
            size = os.fstat(fd).st_size
            if size <= max_bytes:
                return 0
            keep = max_bytes - max_bytes // 2 - _MARKER_ROOM
            return _cut_middle(fd, size, max_bytes, keep)
    except OSError as error:
        logger.warning("cannot cap the try's log %s: %s", log_path, error)
        return 0


def _cut_middle(fd: int, size: int, max_bytes: int, keep: int, pending: bytes = b"") -> int:
    """Make the file its head, a marker, and the last `keep` bytes of its tail + `pending`.

    The tail is what follows the head (or the head's marker, after an earlier cut). Returns
    the bytes this cut removed; the marker counts all of them, earlier cuts included.
    """
    head = max_bytes // 2
    earlier_cut, tail_start = _earlier_cut(fd, head)
    tail_length = size - tail_start + len(pending)
    keep = max(0, min(keep, tail_length))
    from_file = max(0, keep - len(pending))
    kept = os.pread(fd, from_file, size - from_file) + pending[len(pending) - (keep - from_file) :]
    cut = tail_length - keep
    marker = _CUT_MARKER.format(cut=earlier_cut + cut, limit=max_bytes).encode()
    os.pwrite(fd, marker + kept, head)
    os.ftruncate(fd, head + len(marker) + len(kept))
    return cut


def _earlier_cut(fd: int, head: int) -> tuple[int, int]:
    """The bytes an earlier cut counted in its marker at `head`, and where the tail starts."""
    found = _MARKER_PATTERN.match(os.pread(fd, _MARKER_ROOM, head))
    if found is None:
        return 0, head
    return int(found.group(1)), head + found.end()


@contextmanager
def _positioned_writes(fd: int) -> Iterator[None]:
    """Lift `O_APPEND` for the block: with it, Linux's `pwrite` ignores the offset."""
    flags = fcntl.fcntl(fd, fcntl.F_GETFL)
    fcntl.fcntl(fd, fcntl.F_SETFL, flags & ~os.O_APPEND)
    try:
        yield
    finally:
        fcntl.fcntl(fd, fcntl.F_SETFL, flags)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
