"""The state directory's lock: one daemon per state directory, for the daemon's whole life.

The daemon takes an exclusive `fcntl.flock` on `daemon.lock` in the state directory and keeps
it until it exits. The kernel drops the lock when the process dies, however it dies (even by
`kill -9`), so "the lock is free" means "no live process owns the running task instances":
recovery relies on that to decide that tries left running are dead. The file's content (who
holds it, since when) is only for messages; the lock itself decides.

The file is never deleted: unlinking a lock file lets two processes lock two different files
of the same name. A `flock` belongs to an open file description, so a second `acquire` in the
same process fails too, and the descriptor is close-on-exec so worker processes do not keep
the lock alive after the daemon died.

These are blocking file-system calls: from async code, run them in a worker thread.
"""

from __future__ import annotations

import dataclasses
import fcntl
import json
import os
import socket
import time
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

from orchestrator.errors import StateDirError

LOCK_FILENAME = "daemon.lock"

# A `read_holder` probe holds the lock for microseconds; a few short retries keep such a probe
# from making a starting daemon believe another one runs.
_ACQUIRE_ATTEMPTS = 5
_ACQUIRE_RETRY_SECONDS = 0.02
_HOLDER_READ_LIMIT = 64 * 1024


class StateDirLockedError(StateDirError):
    """Another live process (a running daemon, most likely) holds the state directory's lock."""

    def __init__(self, message: str, *, state_dir: Path, holder: Holder) -> None:
        super().__init__(message)
        self.state_dir = state_dir
        self.holder = holder


@dataclasses.dataclass(frozen=True, kw_only=True)
class Holder:
    """Who holds the lock, as it wrote itself into the lock file; None where unreadable."""

    pid: int | None = None
    command: str | None = None
    started_at: str | None = None  # ISO-8601, UTC
    host: str | None = None

    def describe(self) -> str:
        """`pid 123 (orchestrator daemon) on host vm1 since 2026-...`, as much as is known."""
        if self.pid is None:
            return "a process that did not say who it is (the lock file is unreadable)"
        parts = [f"pid {self.pid}"]
        if self.command:
            parts.append(f"({self.command})")
        if self.host:
            parts.append(f"on host {self.host}")
        if self.started_at:
            parts.append(f"since {self.started_at}")
        return " ".join(parts)


class StateDirLock:
    """An exclusive lock on a state directory, held from `acquire` until `release`.

    Use it as a context manager, or call `release()` (idempotent) when the daemon stops.
    """

    def __init__(self, *, state_dir: Path, descriptor: int, holder: Holder) -> None:
        self.state_dir = state_dir
        self.path = state_dir / LOCK_FILENAME
        self.holder = holder
        self._descriptor: int | None = descriptor

    @classmethod
    def acquire(cls, state_dir: Path, *, command: str) -> StateDirLock:
        """Lock `state_dir` (creating it) or raise `StateDirLockedError` naming the holder."""
        state_dir = Path(os.path.abspath(state_dir))
        descriptor = _open_lock_file(state_dir)
        try:
            _lock_exclusively(descriptor, state_dir)
            holder = _write_holder(descriptor, command)
        except OSError as error:  # writing who we are failed: a full disk, a broken mount
            os.close(descriptor)
            raise _unusable(state_dir, error) from error
        except BaseException:
            os.close(descriptor)
            raise
        return cls(state_dir=state_dir, descriptor=descriptor, holder=holder)

    @property
    def held(self) -> bool:
        """True until `release()`."""
        return self._descriptor is not None

    def fileno(self) -> int:
        """The lock file's descriptor (close-on-exec); only while held."""
        if self._descriptor is None:
            raise ValueError(f"the lock on {self.state_dir} was released already")
        return self._descriptor

    def release(self) -> None:
        """Let go of the lock; calling it again does nothing."""
        descriptor, self._descriptor = self._descriptor, None
        if descriptor is not None:
            # Closing the last descriptor of the open file description drops the flock.
            os.close(descriptor)

    def __enter__(self) -> StateDirLock:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.release()

    def __repr__(self) -> str:
        state = "held" if self.held else "released"
        return f"<StateDirLock {self.state_dir} {state}>"


def read_holder(state_dir: Path) -> Holder | None:
    """Who holds `state_dir`'s lock now, or None when nobody does.

    A lock file left by a dead process is not a holder: the answer comes from trying the lock
    (on a separate descriptor, released at once), not from the file's content.
    """
    path = Path(os.path.abspath(state_dir)) / LOCK_FILENAME
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as error:
        raise _unusable(path.parent, error) from error
    try:
        if _try_lock(descriptor, fcntl.LOCK_SH):
            return None  # closing the descriptor below releases the probe
        return _read_holder_file(descriptor)
    finally:
        os.close(descriptor)


# -- taking the lock ----------------------------------------------------------------------------


def _open_lock_file(state_dir: Path) -> int:
    """The lock file's descriptor, close-on-exec so workers never inherit the lock."""
    try:
        state_dir.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(
            state_dir / LOCK_FILENAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644
        )
    except OSError as error:
        raise _unusable(state_dir, error) from error
    os.set_inheritable(descriptor, False)  # O_CLOEXEC already; say it where it is relied on
    return descriptor


def _lock_exclusively(descriptor: int, state_dir: Path) -> None:
    for attempt in range(_ACQUIRE_ATTEMPTS):
        if _try_lock(descriptor, fcntl.LOCK_EX):
            return
        if attempt + 1 < _ACQUIRE_ATTEMPTS:
            time.sleep(_ACQUIRE_RETRY_SECONDS)
    holder = _read_holder_file(descriptor)
    raise StateDirLockedError(
        _locked_message(state_dir, holder), state_dir=state_dir, holder=holder
    )


def _try_lock(descriptor: int, operation: int) -> bool:
    """Take the flock without waiting; False if another open file holds it."""
    try:
        fcntl.flock(descriptor, operation | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _write_holder(descriptor: int, command: str) -> Holder:
    """Replace the file's content with who we are; only ever called with the lock held."""
    holder = Holder(
        pid=os.getpid(),
        command=command,
        started_at=datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        host=socket.gethostname(),
    )
    data = json.dumps(
        {
            "pid": holder.pid,
            "command": command,
            "started_at": holder.started_at,
            "host": holder.host,
        }
    ).encode()
    os.ftruncate(descriptor, 0)
    os.pwrite(descriptor, data + b"\n", 0)
    return holder


# -- reading who holds it -----------------------------------------------------------------------


def _read_holder_file(descriptor: int) -> Holder:
    """The holder's own words; an empty or garbled file gives a Holder of Nones."""
    try:
        data = os.pread(descriptor, _HOLDER_READ_LIMIT, 0)
        # raw_decode: a reader racing the holder's write may see a valid object then leftovers.
        document, _ = json.JSONDecoder().raw_decode(data.decode("utf-8").lstrip())
    except (OSError, ValueError):
        return Holder()
    return _holder_from(document) if isinstance(document, dict) else Holder()


def _holder_from(document: dict[str, Any]) -> Holder:
    pid = document.get("pid")

    def text(key: str) -> str | None:
        value = document.get(key)
        return value if isinstance(value, str) else None

    return Holder(
        pid=pid if isinstance(pid, int) and not isinstance(pid, bool) else None,
        command=text("command"),
        started_at=text("started_at"),
        host=text("host"),
    )


# -- messages -----------------------------------------------------------------------------------


def _locked_message(state_dir: Path, holder: Holder) -> str:
    stop = "systemctl stop orchestrator / kill PID"
    if holder.pid is not None:
        stop = f"systemctl stop orchestrator / kill {holder.pid}"
    return (
        f"The state directory {state_dir} is in use by another orchestrator: "
        f"{holder.describe()}. Stop it first ({stop}), or use another --state-dir."
    )


def _unusable(state_dir: Path, error: OSError) -> StateDirError:
    return StateDirError(
        f"The state directory {state_dir} cannot be locked: {_describe(error)}. Choose another "
        "with --state-dir, the ORCHESTRATOR_STATE_DIR environment variable, or state_dir in "
        "orchestrator.toml."
    )


def _describe(error: OSError) -> str:
    """Why the lock file could not be opened, naming the path that is in the way."""
    where = f" ({error.filename})" if error.filename else ""
    if isinstance(error, FileExistsError | NotADirectoryError):
        return f"a part of its path is a regular file, not a directory{where}"
    if isinstance(error, IsADirectoryError):
        return f"{LOCK_FILENAME} is a directory, not a file{where}"
    return f"{error.strerror or error}{where}"
