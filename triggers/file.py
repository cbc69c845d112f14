"""The file trigger: fire when a matching file lands in a directory, on OS events.

```python
FileTrigger(directory="data/incoming", pattern="*.csv")
```

Files already there count: `run()` subscribes to the directory's shared watch first and lists
the directory second, so a file landing in between is seen by one or the other (contract 3,
nothing lost while down). Each file *version* (size and mtime) fires once per `run()`; a file
rewritten with new content fires again, and its `dedup_key` (`path:size:mtime_ns`) tells the
store whether a run already exists for it.

When is a file complete? Writers should write to a temporary name and rename into place (one
atomic step; the default `stable_for=0` then fires at once). In-progress names are never
counted: hidden names (`.x`, and anything under a hidden folder) and names ending in `.tmp`,
`.part`, `.partial`, `.crdownload` or `~`. For writers that write in place, `stable_for` waits
until the size and mtime have not changed for that many seconds of the runtime clock.
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import AsyncIterator, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import ClassVar

import anyio

from orchestrator.clock import Clock
from triggers.base import Sharing, Trigger, TriggerEvent, current_runtime
from triggers.file_states import FileState, file_event, file_state, list_directory
from triggers.folder_host import Folder, FolderHost
from triggers.watch import Subscription, watch_directory

PARTIAL_SUFFIXES = (".tmp", ".part", ".partial", ".crdownload", "~")


@dataclass(frozen=True, kw_only=True)
class FileTrigger(Trigger):
    """Fire when a file matching `pattern` lands in `directory`. Waits on OS events.

    `pattern` is a glob on the file name; with `recursive` it may also name folders relative to
    `directory` (`2026/*.csv`). `polling=None` polls only on network and FUSE file systems,
    which give no events for changes made on another host. `trusted=False` (a directory taken
    from run conf or a payload) checks it against the runtime's input policy first, and each
    file found in it too (a symlink by its target).
    """

    directory: str
    pattern: str = "*"
    recursive: bool = False
    stable_for: float = 0.0
    polling: bool | None = None
    poll_interval: float = 1.0
    trusted: bool = True
    ignore_partial: bool = True

    fields_checked_as_json: ClassVar[bool] = True  # strings, booleans, finite seconds: below

    def __post_init__(self) -> None:
        _check_text("directory", self.directory)
        _check_text("pattern", self.pattern)
        for name in ("recursive", "trusted", "ignore_partial"):
            _check_bool(name, getattr(self, name))
        if self.polling is not None:
            _check_bool("polling", self.polling)
        _check_seconds("stable_for", self.stable_for, allow_zero=True)
        _check_seconds("poll_interval", self.poll_interval, allow_zero=False)

    async def run(self) -> AsyncIterator[TriggerEvent]:
        root = await self._root()
        clock = current_runtime().clock
        arrivals = _Arrivals(self.stable_for)
        async with watch_directory(
            root, recursive=self.recursive, polling=self.polling, poll_interval=self.poll_interval
        ) as changes:
            # Watching already, so a file landing while we list is caught by one or the other.
            ready = arrivals.update(await self._scan(root), clock.now())
            while True:
                for event in await self._events(root, ready):
                    yield event
                ready = await self._next_ready(root, changes, arrivals, clock)

    async def poll(self) -> TriggerEvent | None:
        """The oldest complete matching file now (by mtime, on the runtime clock), or None."""
        root = await self._root()
        now = current_runtime().clock.now()
        for event in await self._events(root, (await self._scan(root)).items()):
            if self.stable_for == 0 or event.payload["mtime"] <= now - self.stable_for:
                return event
        return None

    async def _root(self) -> str:
        """The directory to watch; an untrusted one must pass the input policy."""
        if self.trusted:
            return _absolute(self.directory)
        policy = current_runtime().policy
        return str(await anyio.to_thread.run_sync(policy.check_path, self.directory))

    async def _scan(self, root: str) -> dict[str, FileState]:
        files = await list_directory(root, self.recursive)
        return {path: state for path, state in files.items() if self.matches(path)}

    async def _next_ready(
        self, root: str, changes: Subscription, arrivals: _Arrivals, clock: Clock
    ) -> list[tuple[str, FileState]]:
        """Wait for changes (or for a pending file to be due); the file versions now ready."""
        await _wait_for_changes(changes, clock, arrivals.next_due())
        batch = changes.take()  # raises TriggerError once the directory is gone
        ready = []
        if batch is not None and batch.rescan:
            found = await self._scan(root)
            arrivals.forget_all_but(found)
            ready = arrivals.update(found, clock.now())
        elif batch is not None:
            files = {path: state for path, state in batch.files.items() if self.matches(path)}
            ready = arrivals.update(files, clock.now(), batch.observed_ns)
        return ready + await _confirm_due(root, arrivals, clock)

    def sharing(self) -> Sharing | None:
        """Trusted, without `stable_for`: one `FolderHost` serves every such trigger on a folder."""
        if not self.trusted or self.stable_for:
            return None
        alike = (self.directory, self.recursive, self.polling, self.poll_interval)
        # An absolute path is the same folder whatever the working directory is then.
        made = _folder_sharing if self.directory.startswith("/") else _new_folder_sharing
        return made(*alike)

    def matches(self, relative: str) -> bool:
        """Whether a file at `relative` (to the directory, `/`-separated) is one to fire for."""
        name = relative.rpartition("/")[2]
        if "/" in relative and not self.recursive:
            return False
        if self.ignore_partial and _is_partial(relative):
            return False
        return fnmatchcase(name, self.pattern) or (
            self.recursive and fnmatchcase(relative, self.pattern)
        )

    async def _events(
        self, root: str, files: Iterable[tuple[str, FileState]]
    ) -> list[TriggerEvent]:
        """One event per file version, oldest first: runs start in the order files landed.

        In an untrusted directory, a file is reported only if its real path is under an allowed
        root too: a symlink there to `/etc/shadow` would otherwise hand out the size and mtime
        of its target, and its path to the task reading it.
        """
        ordered = sorted(files, key=lambda item: (item[1].mtime_ns, item[0]))
        if not self.trusted and ordered:
            paths = [os.path.join(root, relative) for relative, _ in ordered]
            policy = current_runtime().policy
            admitted = await anyio.to_thread.run_sync(policy.admitted_paths, paths)
            ordered = [item for item, path in zip(ordered, paths, strict=True) if path in admitted]
        return [file_event(root, relative, state) for relative, state in ordered]


@dataclass
class _Arrivals:
    """The file versions one `run()` has yielded, and those waiting to hold still."""

    stable_for: float
    seen: dict[str, FileState] = field(default_factory=dict)
    pending: dict[str, tuple[FileState, float]] = field(default_factory=dict)  # since when

    def update(
        self, files: Mapping[str, FileState | None], now: float, observed_ns: int | None = None
    ) -> list[tuple[str, FileState]]:
        """Take in what changed; the versions ready now (new ones, unless waiting to settle).

        `observed_ns`: when a watch batch was observed (None for our own, fresh listing).
        """
        ready = []
        for path, state in files.items():
            if state is None:
                self._forget_deleted(path, observed_ns)
            elif self._is_ready(path, state, now):
                ready.append((path, state))
        return ready

    def _is_ready(self, path: str, state: FileState, now: float) -> bool:
        latest = self._latest(path)
        if latest is not None and state.ctime_ns < latest.ctime_ns:
            return False  # stat'ed by the watch before our own listing saw a newer version
        if self.seen.get(path) == state:
            self.seen[path] = state  # the same version, with the newest ctime to order by
            return False
        if self.stable_for == 0:
            self.seen[path] = state
            return True
        if path not in self.pending or self.pending[path][0] != state:
            self.pending[path] = (state, now)  # new, or changed again: the wait starts over
        return False

    def _forget_deleted(self, path: str, observed_ns: int | None) -> None:
        """Forget a deleted file, so memory follows the directory's content, not its history."""
        latest = self._latest(path)
        if latest is None or (observed_ns is not None and latest.ctime_ns >= observed_ns):
            return  # unknown, or the file we know was (re)written after this was observed
        self.seen.pop(path, None)
        self.pending.pop(path, None)

    def _latest(self, path: str) -> FileState | None:
        if path in self.pending:
            return self.pending[path][0]
        return self.seen.get(path)

    def forget_all_but(self, present: Collection[str]) -> None:
        """After a full listing: files not in it were deleted while we could not see."""
        for known in (self.seen, self.pending):
            for path in [path for path in known if path not in present]:
                del known[path]

    def next_due(self) -> float | None:
        if not self.pending:
            return None
        return min(since for _, since in self.pending.values()) + self.stable_for

    def due(self, now: float) -> list[str]:
        return [path for path, (_, since) in self.pending.items() if since + self.stable_for <= now]

    def confirm(self, path: str, state: FileState | None, now: float) -> bool:
        """A due file stat'ed again: True if it held still (it counts), else it waits again."""
        waiting = self.pending.pop(path, None)
        if waiting is None or state is None:
            return False
        if state != waiting[0]:
            self.pending[path] = (state, now)
            return False
        self.seen[path] = state
        return True


async def _wait_for_changes(changes: Subscription, clock: Clock, deadline: float | None) -> None:
    """Return when changes arrive or the clock reaches `deadline`, whichever comes first."""
    if deadline is None:
        await changes.wait()
        return
    async with anyio.create_task_group() as group:
        group.start_soon(_cancel_at, clock, deadline, group.cancel_scope)
        await changes.wait()
        group.cancel_scope.cancel()


async def _cancel_at(clock: Clock, deadline: float, scope: anyio.CancelScope) -> None:
    await clock.sleep_until(deadline)
    scope.cancel()


async def _confirm_due(root: str, arrivals: _Arrivals, clock: Clock) -> list[tuple[str, FileState]]:
    """Stat the due files again: the watch may not have told us of a write yet."""
    due = arrivals.due(clock.now())
    if not due:
        return []
    states = await anyio.to_thread.run_sync(_file_states, root, due)
    now = clock.now()
    ready = []
    for path, state in zip(due, states, strict=True):
        # confirm() first, always: it also drops a due file that was deleted.
        if arrivals.confirm(path, state, now) and state is not None:
            ready.append((path, state))
    return ready


def _absolute(directory: str) -> str:
    # Not blocking I/O: joins the process's working directory, which it knows.
    return os.path.abspath(directory)


def _file_states(root: str, paths: list[str]) -> list[FileState | None]:
    return [file_state(os.path.join(root, path)) for path in paths]


def _is_partial(relative: str) -> bool:
    """A name still being written: hidden (or under a hidden folder), or a temporary suffix."""
    parts = relative.split("/")
    return any(part.startswith(".") for part in parts) or parts[-1].endswith(PARTIAL_SUFFIXES)


def pattern_warning(pattern: str, recursive: bool, *, ignore_partial: bool = True) -> str | None:
    """Why `pattern` can never match a file, or None. Sensors call it at DAG load to warn."""
    if pattern.endswith("/"):
        return (
            f"pattern {pattern!r} ends with '/': it names a folder, and only files are matched;"
            f" use {pattern + '*'!r} for the files in it"
        )
    if pattern.startswith("/"):
        return (
            f"pattern {pattern!r} starts with '/': patterns match paths relative to the"
            " directory; put the folder in `directory` instead"
        )
    if "/" in pattern and not recursive:
        return (
            f"pattern {pattern!r} contains '/', but without recursive=True only file names are"
            " matched, so it can never match; set recursive=True or drop the folder part"
        )
    return _partial_pattern_warning(pattern) if ignore_partial else None


def _partial_pattern_warning(pattern: str) -> str | None:
    if pattern.startswith(".") or "/." in pattern:
        return (
            f"pattern {pattern!r} only matches hidden names, which are ignored as files still"
            " being written; set ignore_partial=False to count them"
        )
    suffix = next((suffix for suffix in PARTIAL_SUFFIXES if pattern.endswith(suffix)), None)
    if suffix is not None:
        return (
            f"pattern {pattern!r} only matches names ending in {suffix!r}, which are ignored as"
            " files still being written; set ignore_partial=False to count them"
        )
    return None


def _check_text(name: str, value: object) -> None:
    if not isinstance(value, str) or not value:
        raise ValueError(f"FileTrigger.{name} must be a non-empty string, got {value!r}")
    if "\0" in value:
        raise ValueError(f"FileTrigger.{name} must not contain a NUL character")


def _check_bool(name: str, value: object) -> None:
    if not isinstance(value, bool):
        raise ValueError(f"FileTrigger.{name} must be true or false, got {value!r}")


def _check_seconds(name: str, value: object, *, allow_zero: bool) -> None:
    valid = (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and (value > 0 or (allow_zero and value == 0))
    )
    if not valid:
        least = "0 or more" if allow_zero else "more than 0"
        raise ValueError(f"FileTrigger.{name} must be a number of seconds, {least}; got {value!r}")


def _new_folder_sharing(
    directory: str, recursive: bool, polling: bool | None, poll_interval: float
) -> Sharing:
    return Sharing(FolderHost, Folder(_absolute(directory), recursive, polling, poll_interval))


#: The `sharing()` of triggers on an absolute folder, by the fields that make it: one made per
#: folder, not per trigger (100,000 sensors arming on 100 folders). A few hundred at most.
_folder_sharing = functools.lru_cache(maxsize=1024)(_new_folder_sharing)
