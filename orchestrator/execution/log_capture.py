"""Per-try logs for tasks that run in the engine process (async tasks and `in_process` threads).

Worker processes redirect their file descriptors instead; the engine cannot, because many
tasks share it. So `sys.stdout`, `sys.stderr` and the root logger are given, once, a router
that looks up the log file of the task whose code is writing (a context variable, which
`task_threads` copies into the try's thread) and writes there; any other write goes to the
real stream as before.

What the router cannot see: a subprocess or C extension writing to fd 1/2 directly, bytes
written to `sys.stdout.buffer`, and threads the task starts itself (a new `threading.Thread`
does not inherit the context). That output lands in the engine's own streams; run such tasks
in a worker process, where every byte reaches the log.

With a cap (`task_log_max_bytes`) the log is a `CappedLog` under a text wrapper: it never
grows past the cap while the task writes, as a worker's log pipe does (`capped_log.py`).

The root logger's level still decides which records are made at all. Create the engine's
own log handlers on `real_stream("stderr")` (or before the first `capture`): a handler on
the routed `sys.stderr` would copy each of a task's records into its log a second time.
"""

from __future__ import annotations

import contextvars
import io
import logging
import sys
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any, Literal, TextIO

from orchestrator.execution.capped_log import capped_log_made_at_first_write, open_capped_log
from orchestrator.execution.log_files import open_log

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

_current_log: contextvars.ContextVar[TextIO | None] = contextvars.ContextVar(
    "orchestrator_log", default=None
)


class _RoutedStream:
    """Stands in for `sys.stdout` / `sys.stderr`: writes go to the current task's log."""

    def __init__(self, real: TextIO | None) -> None:
        self.real = real

    def write(self, text: str) -> int:
        log = _current_log.get()
        if log is not None:
            return log.write(text)
        return self.real.write(text) if self.real is not None else len(text)

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        log = _current_log.get()
        if log is not None:
            log.flush()
        elif self.real is not None:
            self.real.flush()

    def __getattr__(self, name: str) -> Any:
        # encoding, isatty(), fileno(), buffer...: whatever the real stream has.
        return getattr(self.real, name)


class _RoutedHandler(logging.Handler):
    """A root handler that writes a task's log records to its log, and ignores all others."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(logging.Formatter(LOG_FORMAT))

    def emit(self, record: logging.LogRecord) -> None:
        log = _current_log.get()
        if log is None or _another_handler_routes(self):
            return
        try:
            log.write(self.format(record) + "\n")
        except Exception:
            self.handleError(record)


def _another_handler_routes(handler: logging.Handler) -> bool:
    """True if another root handler writes to a routed stream: it reaches the log already."""
    return any(
        isinstance(getattr(other, "stream", None), _RoutedStream)
        for other in logging.root.handlers
        if other is not handler
    )


_handler = _RoutedHandler()


def install() -> None:
    """Put the routers in place; cheap and idempotent, so `capture` calls it every time.

    Re-checked on every capture because something else (a test runner, a library) may have
    swapped `sys.stdout` or reset the root handlers since.
    """
    if not isinstance(sys.stdout, _RoutedStream):
        sys.stdout = _RoutedStream(sys.stdout)
    if not isinstance(sys.stderr, _RoutedStream):
        sys.stderr = _RoutedStream(sys.stderr)
    if _handler not in logging.root.handlers:
        logging.root.addHandler(_handler)


def real_stream(name: Literal["stdout", "stderr"]) -> TextIO | None:
    """The stream behind the router (the terminal, a pipe), for the engine's own output."""
    stream = getattr(sys, name)
    return stream.real if isinstance(stream, _RoutedStream) else stream


@contextmanager
def capture(log_path: str, max_bytes: int = 0, *, fd: int | None = None) -> Iterator[TextIO]:
    """Send this context's `print`, `sys.stderr` and logging output to `log_path` (appended).

    Yields the open log so the caller can write to it too (a traceback, a timeout notice).
    With `max_bytes`, the log never grows past it while the task writes (see `capped_log`).
    Without a log path the output goes to the engine's stderr, as a worker's would. `fd` is
    `log_path` already opened by `open_log_fd` (off the event loop: `LogOpener`); the
    capture owns it from here and closes it. Without `fd`, a capped log is made by the first
    write (a quiet try leaves no file); if it cannot be, the block's end raises the `OSError`.
    """
    install()
    with _opened_log(log_path, max_bytes, fd) as log:
        token = _current_log.set(log if log_path else None)
        try:
            yield log
        finally:
            _current_log.reset(token)


def _opened_log(log_path: str, max_bytes: int, fd: int | None) -> AbstractContextManager[TextIO]:
    if not log_path:
        return nullcontext(real_stream("stderr") or io.StringIO())
    if max_bytes:
        if fd is None:
            return capped_log_made_at_first_write(log_path, max_bytes)
        return open_capped_log(fd, max_bytes)
    if fd is None:
        return open_log(log_path)
    return open(fd, "a", encoding="utf-8", errors="backslashreplace")
