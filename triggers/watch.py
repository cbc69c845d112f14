"""Watched directories, shared by every trigger that waits on one, on one thread for all.

A thousand `FileTrigger`s on one folder cost one watched directory, not a thousand:
`watch_directory()` hands out a `Subscription` to a watch keyed by the directory's real path,
`recursive` and polling, ref-counted per event loop; the last subscriber to leave ends it.
And a hundred folders cost two inotify instances (a notifier and its doorbell) and one thread,
not a hundred: every directory of an event loop with the same `recursive` and polling shares one
`RustNotify` (see `triggers.notifier`), re-opened without a gap when directories come and go.

Why not `watchfiles.awatch` per trigger: it parks one anyio worker thread per watch in
`RustNotify.watch`, and those threads come from the default limiter of 40, so the 41st watched
directory (and every `to_thread` call in the process) would wait. A daemon `threading.Thread`
drives each shared `RustNotify` instead, the way `awatch` does but with a 1 ms debounce and step
(watchfiles then reports in ~2 ms instead of ~80 ms) only once an inotify doorbell says something
changed (`triggers.doorbell`: asleep while idle, instead of a wake-up per millisecond), and hands
each batch to the loop with
`loop.call_soon_threadsafe` (so this needs asyncio, which the engine runs on).

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
  events. notify's own thread drains the kernel queue (16384 events by default) as it fills.
- The OS watch limit (`fs.inotify.max_user_watches` or `max_user_instances`) is logged with the
  fix and the directories that did not fit fall back to polling.
- The watched directory deleted or moved away ends every subscription with a `TriggerError`.

Network and FUSE file systems deliver no inotify events for changes made elsewhere, so a watch
with `polling=None` polls when /proc/self/mountinfo puts the directory on one of them.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import weakref
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import NamedTuple

import anyio

from orchestrator.errors import TriggerError
from triggers.file_states import FileState, file_state, observation_time_ns, scan_subfolder
from triggers.mounts import filesystem_type, is_network_filesystem
from triggers.notifier import NotifierGroup

logger = logging.getLogger(__name__)

MAX_PENDING_FILES = 10_000
_ADDED = 1  # watchfiles.Change.added


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

    os_watches: int  # watched directories (roots)
    subscribers: int  # subscriptions sharing them
    polling: int  # watches that poll (forced, a network file system, or the watch limit)
    # RustNotify instances, each one thread (and one inotify instance unless it polls). Left out
    # of `==`: how directories are spread over threads is not what a subscriber sees.
    notifiers: int = field(default=0, compare=False)


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
        return self._watch.root

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

    def nudge(self) -> None:
        """Make `wait()` return now, with nothing new to take: its owner has other work."""
        self._ready.set()

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
    polling: bool  # asked for (or a network file system); the watch limit may add more


class _DirectoryWatch:
    """One watched directory and its subscribers: a member of its loop's notifier group."""

    def __init__(self, key: _WatchKey, poll_delay_ms: int, watches: _LoopWatches) -> None:
        self.key = key
        self.polling = key.polling
        self.poll_delay_ms = poll_delay_ms  # the shortest any subscriber asked for
        self.subscribers: set[Subscription] = set()
        self.started = anyio.Event()
        self.failure: str | None = None
        self._watches = watches
        self.group = watches.group(key.recursive, polling=self.polling)

    @property
    def root(self) -> str:
        return self.key.root

    async def ready(self) -> None:
        """Return once the root is watched or the watch has failed."""
        while not self.started.is_set():
            await self.group.settle()  # `group` changes when the watch limit sends it to polling

    async def release(self, subscription: Subscription) -> None:
        """Drop a subscriber; the last one out takes the root off the notifier."""
        self.subscribers.discard(subscription)
        if self.subscribers:
            return
        self._forget()
        self.group.remove(self)
        with anyio.CancelScope(shield=True):  # cleanup must finish even when cancelled
            await self.group.settle()

    # -- called by the group, in the event loop -------------------------------------------------

    def covered(self) -> None:
        self.started.set()

    def deliver(self, batch: WatchBatch) -> None:
        for subscription in self.subscribers:
            subscription._push(batch)

    def rescan(self) -> None:
        self.deliver(WatchBatch(rescan=True))

    def fail(self, message: str) -> None:
        self.failure = message
        self._forget()  # a new subscriber gets a fresh watch (and its own error)
        for subscription in self.subscribers:
            subscription._fail(message)
        self.started.set()

    def poll_instead(self, reason: str) -> None:
        logger.warning(
            "cannot watch %s with OS notifications: the OS file watch limit is reached (%s). "
            "Polling it every %.1f s instead. Raise the limit with `sudo sysctl "
            "fs.inotify.max_user_watches=524288 fs.inotify.max_user_instances=1024` "
            "(persist it in /etc/sysctl.d/).",
            self.root, reason, self.poll_delay_ms / 1000,
        )  # fmt: skip
        self.polling = True
        self.group = self._watches.group(self.key.recursive, polling=True)
        self.group.add(self)

    def _forget(self) -> None:
        if self._watches.watches.get(self.key) is self:
            del self._watches.watches[self.key]


class _LoopWatches:
    """The watched directories of one event loop and the notifier groups they share."""

    def __init__(self) -> None:
        self.watches: dict[_WatchKey, _DirectoryWatch] = {}
        self.groups: dict[tuple[bool, bool], NotifierGroup[WatchBatch]] = {}

    def group(self, recursive: bool, *, polling: bool) -> NotifierGroup[WatchBatch]:
        key = (recursive, polling)
        if key not in self.groups:
            self.groups[key] = NotifierGroup(
                recursive=recursive, polling=polling, describe=_describe_changes
            )
        return self.groups[key]


_registries: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopWatches] = (
    weakref.WeakKeyDictionary()
)
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
        await watch.ready()
        if watch.failure is not None:
            raise TriggerError(watch.failure)
        yield subscription
    finally:
        await watch.release(subscription)


def watch_statistics() -> WatchStatistics:
    """How many directories are watched, by how many subscribers and notifier threads."""
    with _registries_lock:
        loops = list(_registries.values())
        watches = [watch for loop in loops for watch in loop.watches.values()]
        groups = [group for loop in loops for group in loop.groups.values()]
    return WatchStatistics(
        os_watches=len(watches),
        subscribers=sum(len(watch.subscribers) for watch in watches),
        polling=sum(watch.polling for watch in watches),
        notifiers=sum(group.running for group in groups),
    )


def _joined_watch(key: _WatchKey, poll_delay_ms: int) -> _DirectoryWatch:
    loop = asyncio.get_running_loop()
    with _registries_lock:
        watches = _registries.setdefault(loop, _LoopWatches())
        watch = watches.watches.get(key)
        if watch is None:
            watch = watches.watches[key] = _DirectoryWatch(key, poll_delay_ms, watches)
            watch.group.add(watch)
    # A shorter interval asked for later: the group re-opens the poller with it on settle().
    watch.poll_delay_ms = min(watch.poll_delay_ms, poll_delay_ms)
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
    return _WatchKey(root, recursive, polling), poll_delay_ms


# -- what is on disk --------------------------------------------------------------------------


def _describe_changes(
    changes: set[tuple[int, str]], roots: frozenset[str], recursive: bool
) -> tuple[dict[str, WatchBatch], frozenset[str]]:
    """A batch per watched root holding changed paths, and the roots that are gone themselves.

    Runs in the notifier thread, so each path is stat'ed once for every subscriber.
    """
    observed_ns = observation_time_ns()  # before any stat: see `WatchBatch`
    files: dict[str, dict[str, FileState | None]] = {}
    gone: set[str] = set()
    for change, path in changes:
        if path in roots and not os.path.isdir(path):
            gone.add(path)
        for root, relative in _roots_holding(path, roots, recursive):
            files.setdefault(root, {}).update(_changed_path(path, relative, change, recursive))
    batches = {
        root: WatchBatch(files=found, observed_ns=observed_ns) for root, found in files.items()
    }
    return batches, frozenset(gone)


def _roots_holding(path: str, roots: frozenset[str], recursive: bool) -> Iterator[tuple[str, str]]:
    """Each watched root `path` is in, with the path relative to it (roots may nest)."""
    folder = os.path.dirname(path)
    while True:
        if folder in roots:
            yield folder, path[len(os.path.join(folder, "")) :]
        parent = os.path.dirname(folder)
        if not recursive or parent == folder:
            return
        folder = parent


def _changed_path(
    path: str, relative: str, change: int, recursive: bool
) -> Mapping[str, FileState | None]:
    if recursive and change == _ADDED and os.path.isdir(path) and not os.path.islink(path):
        # A folder moved in whole brings files that no event names: list them.
        found: dict[str, FileState] = {}
        scan_subfolder(found, path, f"{relative}/")
        return found
    return {relative: file_state(path)}
