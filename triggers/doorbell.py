"""What lets a notifier thread sleep until something changes: an inotify doorbell.

RustNotify's `watch()` looks at what its OS watcher collected once per `step_ms` and returns
only once two looks agree (watchfiles' `src/lib.rs`), so the step bounds the latency of every
event: a 1 ms step answers in about 2 ms but wakes the thread a thousand times a second while
nothing happens (2 % of a core), and a 50 ms step costs 50 to 100 ms per event.

The doorbell is a second inotify instance on the same directories that only wakes the thread:
the thread blocks in `poll()` on it and on a pipe that `wake()` writes (a replacement or a
stop), then lets RustNotify collect the changes with its 1 ms step, and sleeps again. RustNotify
stays the one source of changes; the doorbell says that something changed, never what.

Where inotify cannot be had (not Linux, or the OS limits on instances or watches reached),
`open_doorbell` returns one that never sleeps: the thread steps every millisecond, as before.
"""

from __future__ import annotations

import ctypes
import errno
import logging
import os
import select
import struct
import sys
import threading

logger = logging.getLogger("triggers.watch")

_IN_MODIFY, _IN_ATTRIB = 0x2, 0x4
_IN_MOVED_FROM, _IN_MOVED_TO, _IN_CREATE, _IN_DELETE = 0x40, 0x80, 0x100, 0x200
_IN_DELETE_SELF, _IN_MOVE_SELF = 0x400, 0x800
_IN_Q_OVERFLOW, _IN_IGNORED, _IN_ONLYDIR, _IN_ISDIR = 0x4000, 0x8000, 0x1000000, 0x40000000
# What RustNotify reports as a change; not IN_CLOSE_WRITE or IN_OPEN, which it drops (each
# would wake the thread to wait for a change that never comes).
_MASK = (
    _IN_MODIFY | _IN_ATTRIB | _IN_MOVED_FROM | _IN_MOVED_TO | _IN_CREATE | _IN_DELETE
    | _IN_DELETE_SELF | _IN_MOVE_SELF | _IN_ONLYDIR
)  # fmt: skip
_EVENT = struct.Struct("iIII")  # wd, mask, cookie, len; then `len` bytes of name


class Doorbell:
    """Never sleeps: the thread steps every millisecond (no inotify here, or over its limits)."""

    def watch(self, roots: frozenset[str]) -> None:
        """Wake for changes under `roots` (and no others) from now on."""

    def wait(self, timeout_s: float) -> bool:
        """Block until a watched directory changes (True), or `wake()` or the timeout (False)."""
        return False

    def wake(self) -> None:
        """Make `wait` return now (from any thread)."""

    def close(self) -> None: ...


class InotifyDoorbell(Doorbell):
    """Sleeps in `poll()` on its own inotify instance until a watched directory changes."""

    def __init__(self, libc: ctypes.CDLL, inotify: int, *, recursive: bool) -> None:
        self._libc = libc
        self._inotify = inotify
        self._recursive = recursive
        self._wake_read, self._wake_write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._poller = select.poll()
        self._poller.register(inotify, select.POLLIN)
        self._poller.register(self._wake_read, select.POLLIN)
        self._roots: frozenset[str] = frozenset()
        self._directories: dict[int, str] = {}  # watch descriptor -> directory
        self._broken = False  # a watch could not be added: never sleep again
        # `wake` may come from another thread after `close`: a closed fd's number may belong
        # to another file by then (the store's database), so nothing may be written to it.
        self._closing = threading.Lock()
        self._closed = False

    def watch(self, roots: frozenset[str]) -> None:
        for descriptor, directory in list(self._directories.items()):
            if not self._covered(directory, roots):
                self._libc.inotify_rm_watch(self._inotify, descriptor)  # fails if gone: fine
                del self._directories[descriptor]
        watched = set(self._directories.values())
        # A root watched before but deleted since (its watch went with it) is watched anew.
        for root in roots - watched:
            self._add_tree(root) if self._recursive else self._add(root)
        self._roots = roots

    def _covered(self, directory: str, roots: frozenset[str]) -> bool:
        """Whether a watch on `roots` includes `directory` (roots may nest)."""
        while directory not in roots:
            parent = os.path.dirname(directory)
            if not self._recursive or parent == directory:
                return False
            directory = parent
        return True

    def wait(self, timeout_s: float) -> bool:
        if self._broken:
            return False
        ready = {fd for fd, _ in self._poller.poll(timeout_s * 1000)}
        if self._wake_read in ready:
            _drain(self._wake_read)
        return self._inotify in ready and self._read_events()

    def wake(self) -> None:
        with self._closing:
            if self._closed:
                return  # the thread has ended: nobody to wake
            try:
                os.write(self._wake_write, b"\0")
            except BlockingIOError:  # the pipe is full of wake-ups already
                pass

    def close(self) -> None:
        with self._closing:
            if self._closed:
                return
            self._closed = True
            for fd in (self._inotify, self._wake_read, self._wake_write):
                os.close(fd)

    def _read_events(self) -> bool:
        """Drain the queue; in a recursive watch, new folders are watched too. True if any."""
        data = _drain(self._inotify)
        offset = 0
        while offset < len(data):
            descriptor, mask, _, length = _EVENT.unpack_from(data, offset)
            name = data[offset + _EVENT.size : offset + _EVENT.size + length].rstrip(b"\0")
            offset += _EVENT.size + length
            self._note(descriptor, mask, os.fsdecode(name))
        return bool(data)

    def _note(self, descriptor: int, mask: int, name: str) -> None:
        if mask & _IN_IGNORED:  # the folder is gone, and its watch with it
            self._directories.pop(descriptor, None)
        elif mask & _IN_Q_OVERFLOW and self._recursive:  # folders may have come unseen
            for root in self._roots:
                self._add_tree(root)
        elif self._recursive and mask & _IN_ISDIR and mask & (_IN_CREATE | _IN_MOVED_TO):
            if (parent := self._directories.get(descriptor)) is not None:
                self._add_tree(os.path.join(parent, name))

    def _add_tree(self, top: str) -> None:
        self._add(top)
        for directory, folders, _ in os.walk(top):  # symlinked folders are not followed
            for folder in folders:
                self._add(os.path.join(directory, folder))

    def _add(self, directory: str) -> None:
        try:
            descriptor = self._add_watch(directory)
        except OSError as error:
            if error.errno in (errno.ENOENT, errno.ENOTDIR, errno.EACCES):
                return  # gone already, or not ours: RustNotify reports what it can
            logger.info("no inotify doorbell for %s (%s); watching steps instead", directory, error)
            self._broken = True
            return
        self._directories[descriptor] = directory

    def _add_watch(self, directory: str) -> int:
        descriptor: int = self._libc.inotify_add_watch(self._inotify, os.fsencode(directory), _MASK)
        if descriptor < 0:
            error = ctypes.get_errno()
            raise OSError(error, os.strerror(error), directory)
        return descriptor


def open_doorbell(*, recursive: bool, polling: bool) -> Doorbell:
    """An inotify doorbell on Linux; one that never sleeps when polling or elsewhere."""
    if polling or not sys.platform.startswith("linux") or _libc is None:
        return Doorbell()
    inotify = _libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
    if inotify < 0:
        error = ctypes.get_errno()
        logger.info("no inotify doorbell (%s); watching steps instead", os.strerror(error))
        return Doorbell()
    return InotifyDoorbell(_libc, inotify, recursive=recursive)


def _load_libc() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None


_libc = _load_libc() if sys.platform.startswith("linux") else None


def _drain(fd: int) -> bytes:
    chunks = []
    while True:
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)
