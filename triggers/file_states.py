"""A file's version as the file triggers see it, and the listing of a directory by versions.

A file is new when its `FileState` (size and mtime) was not seen before; listing a directory
this way is how a trigger catches up on files that landed while nobody watched.
"""

from __future__ import annotations

import logging
import os
import stat
import time
from dataclasses import dataclass, field

import anyio

from orchestrator.errors import TriggerError
from triggers.base import TriggerEvent

logger = logging.getLogger("triggers.watch")

_CTIME_CLOCK = getattr(time, "CLOCK_REALTIME_COARSE", time.CLOCK_REALTIME)


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
                scan_subfolder(files, entry.path, f"{prefix}{entry.name}/")
            elif (state := file_state(entry.path)) is not None:
                files[prefix + entry.name] = state


def scan_subfolder(files: dict[str, FileState], directory: str, prefix: str) -> None:
    """Add the files under `directory` (named `prefix` + their path), skipping what vanished."""
    try:
        _scan_into(files, directory, prefix, recursive=True)
    except OSError as error:  # deleted while we list it, or not ours to read
        logger.debug("skipping %s: %s", directory, error)


async def list_directory(root: str, recursive: bool) -> dict[str, FileState]:
    """Every file in `root` now (in a thread); `TriggerError` if it cannot be listed."""
    try:
        return await anyio.to_thread.run_sync(scan_directory, root, recursive)
    except FileNotFoundError:
        raise TriggerError(f"the directory {root} does not exist") from None
    except OSError as error:
        raise TriggerError(f"cannot list the directory {root}: {error}") from None


def file_event(root: str, relative: str, state: FileState) -> TriggerEvent:
    """The event of a file version: its path and version, keyed by both."""
    path = os.path.join(root, relative)
    payload = {
        "path": path,
        "name": os.path.basename(path),
        "directory": root,
        "size": state.size,
        "mtime": state.mtime_ns / 1e9,
    }
    return TriggerEvent(payload, dedup_key=f"{path}:{state.size}:{state.mtime_ns}")
