"""One OS watch per directory, shared by every trigger that waits on it.

A thousand `FileTrigger`s on one folder cost one inotify watch and one thread, not a thousand:
`watch_directory()` hands out a `Subscription` to a watch keyed by the directory's real path,
`recursive` and polling, ref-counted per event loop; the last subscriber to leave stops it.

Why not `watchfiles.awatch` per trigger: it parks one anyio worker thread per watch in
`RustNotify.watch`, and those threads come from the default limiter of 40, so the 41st watched
directory (and every `to_thread` call in the process) would wait. Each watched directory gets
its own daemon `threading.Thread` instead, which drives `RustNotify` the way `awatch` does, with a
1 ms debounce and step (watchfiles then reports in ~2 ms instead of ~80 ms; the price is a wake-up
per millisecond, about 0.6 % of a core per watched directory while idle), and hands each batch
to the loop with `loop.call_soon_threadsafe` (so this needs asyncio, which the engine runs on).

What a subscriber gets: `WatchBatch`es mapping each changed path (relative to the directory,
`/`-separated) to its `FileState` now, stat'ed once in the watch thread for all subscribers,
or None when no file is there any more. A folder that appears in a recursive watch is listed,
because files moved in with it get no events of their own.

Nothing is dropped silently:

- A subscriber that falls behind has its pending batches merged into one (the latest state of
  each path is all a subscriber needs), so memory is bounded by the paths that changed; past
  `MAX_PENDING_FILES` the batch collapses into `rescan=True`: scan the directory again.
- An error from the watcher (`WatchfilesRustInternalError`) is logged, the watch re-opened and
  every subscriber told to rescan. An inotify queue overflow (`IN_Q_OVERFLOW`) cannot be seen:
  notify reports it as an event with a rescan flag and no path, and watchfiles drops path-less
  events. The 1 ms step drains the kernel queue (16384 events by default) long before it fills.
- The OS watch limit (`fs.inotify.max_user_watches` or `max_user_instances`) is logged with the
  fix and that directory falls back to polling.
- The watched directory deleted or moved away ends every subscription with a `TriggerError`.

Network and FUSE file systems deliver no inotify events for changes made elsewhere, so a watch
with `polling=None` polls when /proc/self/mountinfo puts the directory on one of them.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import stat
import threading
import time
import weakref
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import anyio
from watchfiles._rust_notify import RustNotify, WatchfilesRustInternalError

from orchestrator.errors import TriggerError

logger = logging.getLogger(__name__)

DEBOUNCE_MS = 1
STEP_MS = 1
MAX_PENDING_FILES = 10_000
_CTIME_CLOCK = getattr(time, "CLOCK_REALTIME_COARSE", time.CLOCK_REALTIME)
_ADDED = 1  # watchfiles.Change.added

# File systems whose changes made on another host never reach this kernel's inotify.
NETWORK_FILE_SYSTEMS = frozenset(
    {
        "nfs", "nfs4", "cifs", "smb3", "smbfs", "sshfs", "9p", "ceph", "glusterfs",
        "davfs", "afs", "lustre", "s3fs", "rclone", "gcsfuse",
    }
)  # fmt: skip


@dataclass(frozen=True)
class FileState:
    """A file's version (size and mtime, as `os.stat` gives them) and when it was last changed.

    `ctime_ns` orders observations of one path: the kernel sets it on every change (rename
    included) and nobody can set it back, so the observation with the older ctime is stale.
    It is not part of the version: a `chmod` makes no new file.
    """

    size: int
    mtime_ns: int
    ctime_ns: int = field(default=0, compare=False)


@dataclass(frozen=True)
class WatchBatch:
    """What changed since the subscriber last looked; `rescan`: events were lost, list again.

    `observed_ns` is read (on the coarse clock the kernel stamps ctimes with) before the paths
    are stat'ed: a file whose ctime is not older than that was written after this batch saw
    no file at its path, so that deletion is stale.
    """

    files: Mapping[str, FileState | None] = field(default_factory=dict)
    rescan: bool = False
    observed_ns: int = field(default=0, compare=False)

    def merged(self, later: WatchBatch) -> WatchBatch:
        """One batch saying what both say: the later state of a path wins."""
        if self.rescan or later.rescan:
            return WatchBatch(rescan=True)  # a rescan lists every file anyway
        observed_ns = min(self.observed_ns, later.observed_ns)  # the cautious one for deletions
        return WatchBatch(files={**self.files, **later.files}, observed_ns=observed_ns)


@dataclass(frozen=True)
class WatchStatistics:
    """A snapshot of the watches of this process (every event loop)."""

    os_watches: int  # watched directories, each one OS watch and one thread
    subscribers: int  # subscriptions sharing them
    polling: int  # watches that poll (forced, a network file system, or the watch limit)


class Subscription:
    """One subscriber's view of a shared watch: the changes it has not taken yet."""

    def __init__(self, watch: _DirectoryWatch) -> None:
        self._watch = watch
        self._pending: WatchBatch | None = None
        self._failure: str | None = None
        self._ready = anyio.Event()

    @property
    def directory(self) -> str:
        """The real path of the watched directory (paths in batches are relative to it)."""
        return self._watch.key.root

    @property
    def polling(self) -> bool:
        return self._watch.polling

    @property
    def pending(self) -> WatchBatch | None:
        """The batch `take()` would return, without taking it."""
        return self._pending

    async def wait(self) -> None:
        """Return once there is a batch to take, or the watch has failed."""
        if self._pending is None and self._failure is None:
            await self._ready.wait()

    def take(self) -> WatchBatch | None:
        """The changes since the last take, or None. Raises `TriggerError` once the watch failed."""
        batch, self._pending = self._pending, None
        if self._failure is None:
            self._ready = anyio.Event()
        elif batch is None:  # changes seen before the failure are handed out first
            raise TriggerError(self._failure)
        return batch

    async def receive(self) -> WatchBatch:
        """Wait for the next batch and take it."""
        while True:
            await self.wait()
            if (batch := self.take()) is not None:
                return batch

    def _push(self, batch: WatchBatch) -> None:
        merged = batch if self._pending is None else self._pending.merged(batch)
        if len(merged.files) > MAX_PENDING_FILES:
            logger.info("a subscriber of %s fell behind; it will rescan", self.directory)
            merged = WatchBatch(rescan=True)
        self._pending = merged
        self._ready.set()

    def _fail(self, message: str) -> None:
        self._failure = message
        self._ready.set()


class _WatchKey(NamedTuple):
    root: str  # the real path, so that two spellings of one folder share a watch
    recursive: bool
    poll_delay_ms: int | None  # None: OS notifications


class _DirectoryWatch:
    """One OS watch and the thread that drains it, shared by its subscribers."""

    def __init__(
        self, key: _WatchKey, poll_delay_ms: int, registry: dict[_WatchKey, _DirectoryWatch]
    ) -> None:
        self.key = key
        self.polling = key.poll_delay_ms is not None
        self.subscribers: set[Subscription] = set()
        self.started = anyio.Event()
        self.failure: str | None = None
        self._poll_delay_ms = poll_delay_ms
        self._registry = registry
        self._loop = asyncio.get_running_loop()
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"file-watch {key.root}", daemon=True
        )

    def start(self) -> None:
        self._registry[self.key] = self
        self._thread.start()

    async def release(self, subscription: Subscription) -> None:
        """Drop a subscriber; the last one out stops the thread and waits for it to end."""
        self.subscribers.discard(subscription)
        if self.subscribers:
            return
        self._forget()
        self._stop.set()
        with anyio.CancelScope(shield=True):  # cleanup must finish even when cancelled
            await anyio.to_thread.run_sync(self._thread.join)

    # -- in the event loop, called from the thread through `_post` ------------------------------

    def _deliver(self, batch: WatchBatch) -> None:
        for subscription in self.subscribers:
            subscription._push(batch)

    def _fail(self, message: str) -> None:
        self.failure = message
        self._forget()  # a new subscriber gets a fresh watch (and its own error)
        for subscription in self.subscribers:
            subscription._fail(message)
        self.started.set()

    def _forget(self) -> None:
        if self._registry.get(self.key) is self:
            del self._registry[self.key]

    # -- in the watch thread --------------------------------------------------------------------

    def _run(self) -> None:
        notify = self._open_or_fail(started=False)
        if notify is not None:
            self._post(self.started.set)
        while notify is not None:
            notify = self._watch_until_error(notify)

    def _watch_until_error(self, notify: RustNotify) -> RustNotify | None:
        """Drain `notify` until stopped (None) or it breaks (a fresh one, after a rescan)."""
        with notify:  # closes it
            try:
                while not self._stop.is_set():
                    changes = notify.watch(DEBOUNCE_MS, STEP_MS, 0, self._stop)
                    if isinstance(changes, set) and not self._publish(changes):
                        return None
                return None
            except WatchfilesRustInternalError as error:
                # The error sticks to this RustNotify: every later watch() raises it again.
                logger.warning(
                    "watching %s failed (%s); re-opening the watch and rescanning",
                    self.key.root,
                    error,
                )
        if self._stop.is_set():
            return None
        fresh = self._open_or_fail(started=True)
        if fresh is not None:
            # Only now that the new watch is in place: a rescan done earlier could miss files.
            self._post(self._deliver, WatchBatch(rescan=True))
        return fresh

    def _publish(self, changes: set[tuple[int, str]]) -> bool:
        """Hand a batch to the loop; False when the directory itself is gone."""
        observed_ns = observation_time_ns()
        files, gone = _describe_changes(changes, self.key.root, self.key.recursive)
        if files:
            self._post(self._deliver, WatchBatch(files=files, observed_ns=observed_ns))
        if gone:
            self._post(
                self._fail, f"the watched directory {self.key.root} was deleted or moved away"
            )
        return not gone

    def _open_or_fail(self, *, started: bool) -> RustNotify | None:
        try:
            return self._open()
        except (OSError, WatchfilesRustInternalError) as error:
            self._post(self._fail, _open_error_message(self.key.root, error, started=started))
            return None

    def _open(self) -> RustNotify:
        try:
            return self._notify(force_polling=self.polling)
        except (OSError, WatchfilesRustInternalError) as error:
            if self.polling or not _is_watch_limit(error):
                raise
            logger.warning(
                "cannot watch %s with OS notifications: the OS file watch limit is reached (%s). "
                "Polling it every %.1f s instead. Raise the limit with `sudo sysctl "
                "fs.inotify.max_user_watches=524288 fs.inotify.max_user_instances=1024` "
                "(persist it in /etc/sysctl.d/).",
                self.key.root, error, self._poll_delay_ms / 1000,
            )  # fmt: skip
            self.polling = True
            return self._notify(force_polling=True)

    def _notify(self, *, force_polling: bool) -> RustNotify:
        return RustNotify(
            [self.key.root], False, force_polling, self._poll_delay_ms, self.key.recursive, False
        )

    def _post(self, callback: Callable[..., object], *args: object) -> None:
        try:
            self._loop.call_soon_threadsafe(callback, *args)
        except RuntimeError:  # the loop is closed: nobody is listening any more
            self._stop.set()


_registries: weakref.WeakKeyDictionary[
    asyncio.AbstractEventLoop, dict[_WatchKey, _DirectoryWatch]
] = weakref.WeakKeyDictionary()
_registries_lock = threading.Lock()  # statistics may be read from another loop's thread


@asynccontextmanager
async def watch_directory(
    directory: str,
    *,
    recursive: bool = False,
    polling: bool | None = None,
    poll_interval: float = 1.0,
) -> AsyncIterator[Subscription]:
    """Subscribe to changes in `directory`; the OS watch is in place when this returns.

    `polling=None` polls only on network and FUSE file systems. Raises `TriggerError` when the
    directory does not exist or cannot be watched.
    """
    key, poll_delay_ms = await anyio.to_thread.run_sync(
        _resolve_key, directory, recursive, polling, poll_interval
    )
    watch = _joined_watch(key, poll_delay_ms)
    subscription = Subscription(watch)
    watch.subscribers.add(subscription)
    try:
        await watch.started.wait()
        if watch.failure is not None:
            raise TriggerError(watch.failure)
        yield subscription
    finally:
        await watch.release(subscription)


def watch_statistics() -> WatchStatistics:
    """How many OS watches are open, how many subscribers share them, how many poll."""
    with _registries_lock:
        watches = [watch for registry in _registries.values() for watch in registry.values()]
    return WatchStatistics(
        os_watches=len(watches),
        subscribers=sum(len(watch.subscribers) for watch in watches),
        polling=sum(watch.polling for watch in watches),
    )


def _joined_watch(key: _WatchKey, poll_delay_ms: int) -> _DirectoryWatch:
    loop = asyncio.get_running_loop()
    with _registries_lock:
        registry = _registries.setdefault(loop, {})
        watch = registry.get(key)
        if watch is None:
            watch = _DirectoryWatch(key, poll_delay_ms, registry)
            watch.start()
    return watch


def _resolve_key(
    directory: str, recursive: bool, polling: bool | None, poll_interval: float
) -> tuple[_WatchKey, int]:
    root = os.path.realpath(directory)
    if not os.path.isdir(root):
        what = "is not a directory" if os.path.exists(root) else "does not exist"
        raise TriggerError(f"the directory {directory} {what}")
    if polling is None:
        polling = is_network_filesystem(filesystem_type(root))
    poll_delay_ms = max(1, round(poll_interval * 1000))
    return _WatchKey(root, recursive, poll_delay_ms if polling else None), poll_delay_ms


def _open_error_message(root: str, error: BaseException, *, started: bool) -> str:
    if isinstance(error, FileNotFoundError) or not os.path.isdir(root):
        if started:
            return f"the watched directory {root} was deleted or moved away"
        return f"the directory {root} does not exist"
    if isinstance(error, PermissionError):
        return f"cannot watch the directory {root}: permission denied"
    return f"cannot watch the directory {root}: {error}"


def _is_watch_limit(error: BaseException) -> bool:
    """True for inotify's ENOSPC (max_user_watches) and EMFILE (max_user_instances)."""
    text = str(error).lower()
    markers = ("watch limit", "maxfileswatch", "os error 28", "os error 24", "too many open files")
    return any(marker in text for marker in markers)


# -- what is on disk --------------------------------------------------------------------------


def file_state(path: str) -> FileState | None:
    """The version of the regular file at `path` (symlinks followed), or None if there is none."""
    try:
        info = os.stat(path)
    except (OSError, ValueError):  # gone, a dangling link, a name the OS refuses
        return None
    if not stat.S_ISREG(info.st_mode):
        return None
    return FileState(info.st_size, info.st_mtime_ns, info.st_ctime_ns)


def observation_time_ns() -> int:
    """Now, on the clock the kernel stamps ctimes with (coarse: it may lag by a tick)."""
    return time.clock_gettime_ns(_CTIME_CLOCK)


def scan_directory(root: str, recursive: bool) -> dict[str, FileState]:
    """Every regular file under `root`, by `/`-separated relative path. Blocking: use a thread.

    Raises `OSError` when `root` itself cannot be listed; unreadable or vanishing subfolders are
    skipped. Symlinked folders are not followed (a link loop would never end).
    """
    files: dict[str, FileState] = {}
    _scan_into(files, root, "", recursive)
    return files


def _scan_into(files: dict[str, FileState], directory: str, prefix: str, recursive: bool) -> None:
    with os.scandir(directory) as entries:
        for entry in entries:
            if recursive and entry.is_dir(follow_symlinks=False):
                _scan_subfolder(files, entry.path, f"{prefix}{entry.name}/")
            elif (state := file_state(entry.path)) is not None:
                files[prefix + entry.name] = state


def _scan_subfolder(files: dict[str, FileState], directory: str, prefix: str) -> None:
    try:
        _scan_into(files, directory, prefix, recursive=True)
    except OSError as error:  # deleted while we list it, or not ours to read
        logger.debug("skipping %s: %s", directory, error)


def _describe_changes(
    changes: set[tuple[int, str]], root: str, recursive: bool
) -> tuple[dict[str, FileState | None], bool]:
    """The state now of each changed path, and whether the watched directory itself is gone."""
    files: dict[str, FileState | None] = {}
    gone = False
    prefix = os.path.join(root, "")
    for change, path in changes:
        if path == root:
            gone = gone or not os.path.isdir(root)
        elif path.startswith(prefix):
            files.update(_changed_path(path, path[len(prefix) :], change, recursive))
    return files, gone


def _changed_path(
    path: str, relative: str, change: int, recursive: bool
) -> Mapping[str, FileState | None]:
    if recursive and change == _ADDED and os.path.isdir(path) and not os.path.islink(path):
        # A folder moved in whole brings files that no event names: list them.
        found: dict[str, FileState] = {}
        _scan_subfolder(found, path, f"{relative}/")
        return found
    return {relative: file_state(path)}


# -- which file system a directory is on ------------------------------------------------------


def filesystem_type(path: str, mountinfo: str | None = None) -> str | None:
    """The type of the file system holding `path` (`ext4`, `nfs4`, `fuse.sshfs`), or None.

    Read from `/proc/self/mountinfo` (or the given text): the longest mount point containing
    `path`, the later mount where two share one point. None where there is no mountinfo.
    """
    if mountinfo is None:
        try:
            mountinfo = Path("/proc/self/mountinfo").read_text()
        except OSError:  # not Linux
            return None
    found: tuple[int, str] | None = None
    for line in mountinfo.splitlines():
        mount = _parse_mount(line)
        if mount is not None and _is_under(path, mount[0]):
            if found is None or len(mount[0]) >= found[0]:
                found = (len(mount[0]), mount[1])
    return None if found is None else found[1]


def is_network_filesystem(fstype: str | None) -> bool:
    """True for file systems that give no inotify events for changes made elsewhere."""
    if fstype is None:
        return False
    return fstype in NETWORK_FILE_SYSTEMS or fstype.removeprefix("fuse.") in NETWORK_FILE_SYSTEMS


def _parse_mount(line: str) -> tuple[str, str] | None:
    """`(mount point, fs type)` from `id parent dev root mount-point opts [tags] - type ...`."""
    fields = line.split()
    if len(fields) < 7 or "-" not in fields[6:]:
        return None
    separator = fields.index("-", 6)
    if separator + 1 >= len(fields):
        return None
    return _unescape(fields[4]), fields[separator + 1]


def _unescape(text: str) -> str:
    """Mountinfo writes space, tab, newline and backslash as octal escapes (`\\040`)."""
    return re.sub(r"\\([0-7]{3})", lambda match: chr(int(match.group(1), 8)), text)


def _is_under(path: str, mount_point: str) -> bool:
    return path == mount_point or path.startswith(os.path.join(mount_point, ""))
