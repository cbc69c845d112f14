"""Webhook secret files: read safely, off the event loop, and again only when they change.

A secret file is read when a delivery arrives, before its signature can be checked, so
whoever can POST decides when it is read. Three things keep that from freezing the daemon:

- only a regular file of at most `MAX_SECRET_FILE_BYTES` is read: it is opened non-blocking
  (a FIFO would otherwise wait for a writer forever) and checked with `fstat` on the open
  descriptor, so a file swapped for something else between a check and the read is caught;
- the read happens in a worker thread, one at a time per file, under `READ_TIMEOUT`: a file
  on a hung mount costs its own webhook a 503, never the event loop;
- the text is cached with the file's identity (device, inode, size, times): each delivery
  costs one `stat`, and a rotated file is read again at the next delivery, no restart needed.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass

import anyio

from orchestrator.errors import RunError

#: A secret file holds a few secrets, one per line; anything larger is not one.
MAX_SECRET_FILE_BYTES = 64 * 1024
#: How long reading a secret file may take before the delivery is refused (503).
READ_TIMEOUT = 5.0

_Identity = tuple[int, int, int, int, int]


def read_secret_file(path: str, *, where: str) -> list[str]:
    """The non-empty lines of the secret file at `path`; `RunError` naming `where` otherwise.

    Blocking: call it off the event loop (`SecretFileCache` does).
    """
    return _read(path, where)[1]


@dataclass(frozen=True)
class _Cached:
    identity: _Identity
    lines: list[str]


class SecretFileCache:
    """The secrets of each file, re-read only when the file changed; reads off the loop."""

    def __init__(self) -> None:
        self._cached: dict[str, _Cached] = {}
        self._limiters: dict[str, anyio.CapacityLimiter] = {}

    async def read(self, path: str, *, where: str) -> list[str]:
        """The file's secrets; `RunError` when it cannot be read within `READ_TIMEOUT`."""
        limiter = self._limiters.setdefault(path, anyio.CapacityLimiter(1))
        with anyio.move_on_after(READ_TIMEOUT):
            return await anyio.to_thread.run_sync(
                self._read_if_changed, path, where, limiter=limiter, abandon_on_cancel=True
            )
        raise RunError(
            f"{where}: reading the secret file {path} took more than {READ_TIMEOUT:g} s "
            "(a hung mount?); deliveries are refused until it can be read"
        )

    def _read_if_changed(self, path: str, where: str) -> list[str]:
        cached = self._cached.get(path)
        if cached is not None and cached.identity == _identity(_stat(path, where)):
            return cached.lines
        identity, lines = _read(path, where)
        self._cached[path] = _Cached(identity, lines)
        return lines


def _read(path: str, where: str) -> tuple[_Identity, list[str]]:
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as error:
        raise _unreadable(path, where, error) from None
    try:
        # Checked on the open descriptor: the file cannot be swapped between check and read.
        status = os.fstat(descriptor)
        _check_kind(status, path, where)
        data = os.read(descriptor, MAX_SECRET_FILE_BYTES + 1)
    finally:
        os.close(descriptor)
    _check_size(len(data), path, where)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise RunError(
            f"{where}: the secret file {path} is not UTF-8 text; write one secret per line"
        ) from None
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        raise RunError(f"{where}: the secret file {path} holds no secret; write one per line")
    return _identity(status), lines


def _stat(path: str, where: str) -> os.stat_result:
    try:
        return os.stat(path)
    except OSError as error:
        raise _unreadable(path, where, error) from None


def _check_kind(status: os.stat_result, path: str, where: str) -> None:
    if not stat.S_ISREG(status.st_mode):
        raise RunError(
            f"{where}: the secret file {path} is not a regular file (a FIFO, a device or a "
            "folder would let a delivery hang the daemon); write the secret to a plain file"
        )
    _check_size(status.st_size, path, where)


def _check_size(size: int, path: str, where: str) -> None:
    if size > MAX_SECRET_FILE_BYTES:
        raise RunError(
            f"{where}: the secret file {path} is larger than {MAX_SECRET_FILE_BYTES} bytes; "
            "it should hold a few secrets, one per line"
        )


def _identity(status: os.stat_result) -> _Identity:
    return (status.st_dev, status.st_ino, status.st_size, status.st_mtime_ns, status.st_ctime_ns)


def _unreadable(path: str, where: str, error: OSError) -> RunError:
    return RunError(
        f"{where}: cannot read the secret file {path}: {error.strerror or error}; check that "
        "it exists and the daemon's user may read it"
    )
