"""The daemon reloads DAG files when they change: no restart to deploy a pipeline.

The DAGs folder is watched with watchfiles. A changed file is checked in a subprocess under
the import limits, then imported again in a worker thread (never on the event loop). One that
now fails (raises, or loops, exits or forks at import) keeps its last good DAGs running (their
schedules and run triggers go on) and its error is recorded for `orchestrator dags list`; a
deleted file's DAGs stop. Runs already going keep the version they started with.
"""

from __future__ import annotations

import logging
import os
import stat
import threading
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import anyio
from anyio.abc import TaskStatus
from watchfiles._rust_notify import RustNotify

from orchestrator.loading.dagbag import (
    Stamp,
    changed_since_loaded,
    file_stamps,
    forget_missing_folder,
    load_checked_file,
    note_stamp,
)
from orchestrator.loading.importcheck import ImportLimits, check_files
from orchestrator.loading.importer import FileResult

if TYPE_CHECKING:
    from orchestrator.scheduling.engine import Engine

logger = logging.getLogger("orchestrator.reload")

_DEBOUNCE_MS = 200  # an editor's save is often several writes: reload once
_STEP_MS = 50
_RECHECK_MS = 1000  # how often the folder's identity is compared (a swap makes no event)


async def follow_dag_folder(
    engine: Engine, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
) -> None:
    """Reload each DAG file of the engine's folder that changes, until cancelled.

    Started with `await task_group.start(follow_dag_folder, engine)`, it returns once the
    folder is watched and the files edited while the engine loaded it are reloaded: an edit
    made after that is never missed. A folder replaced as a whole (deleted and made again, a
    symlink moved to another release, a Kubernetes ConfigMap's `..data` swap) is followed
    too, as is one that does not exist yet.
    """
    stop = threading.Event()
    watch = await anyio.to_thread.run_sync(_FolderWatch, str(engine.dagbag.folder))
    try:
        # Edits made while the engine loaded the folder, before the watch: found by their stamps.
        await _reload_all(engine, set())
        task_status.started()  # the OS watch is in place: no later edit is missed
        while True:
            changed = await anyio.to_thread.run_sync(watch.wait, stop, abandon_on_cancel=True)
            if changed is not None:
                await _reload_all(engine, changed)
    finally:
        stop.set()  # ends the abandoned `wait` call within one step (its thread drops the watch)


class _FolderWatch:
    """The OS watch on the DAGs folder, moved to the folder that has its name now.

    An OS watch follows the directory it was given, not its name: after a swap it sees
    nothing more. So each wait also ends after `_RECHECK_MS` to compare the folder's identity
    (device and inode, through any symlink), and a new folder gets a new watch. Where no
    watch can be had (the OS watch limit), the stamps are compared at each recheck instead.
    """

    def __init__(self, folder: str) -> None:
        self.folder = folder
        self.identity = _identity(folder)
        self._watcher: RustNotify | None = None
        self._unwatchable: str | None = None  # why watching failed last, once told
        if self.identity is None:
            logger.warning("the DAGs folder %s does not exist: waiting for it", folder)
        else:
            self._watch()

    def wait(self, stop: threading.Event) -> set[str] | None:
        """The changed paths (maybe none: compare the stamps), or None once `stop` is set.

        Blocking, in a thread of its own: the rechecks that find nothing never wake the loop.
        """
        while not stop.is_set():
            changed = self._wait_once(stop)
            if changed is not None:
                return changed
        return None

    def _wait_once(self, stop: threading.Event) -> set[str] | None:
        changes = self._changes(stop)
        paths = {path for _, path in changes} if isinstance(changes, set) else None
        identity = _identity(self.folder)
        if identity != self.identity or (paths is not None and self.folder in paths):
            self.identity = identity
            self.close()
            if identity is None:
                logger.warning(
                    "the DAGs folder %s is gone: its DAGs stop until it is back", self.folder
                )
            else:
                logger.info("the DAGs folder %s was replaced: following the new one", self.folder)
        elif self._watcher is not None or identity is None:
            return paths
        if identity is not None:
            self._watch()  # if it cannot be had, the stamps still tell what changed
        return paths or set()

    def close(self) -> None:
        if self._watcher is not None:
            self._watcher.close()
            self._watcher = None

    def _changes(self, stop: threading.Event) -> object:
        if self._watcher is None:
            stop.wait(_RECHECK_MS / 1000)
            return None
        try:
            changes = self._watcher.watch(_DEBOUNCE_MS, _STEP_MS, _RECHECK_MS, stop)
            self._unwatchable = None
            return changes
        except (OSError, RuntimeError) as error:  # the folder went from under it, say
            if self._unwatchable != str(error):
                logger.warning("the watch on the DAGs folder %s failed: %s", self.folder, error)
            self._unwatchable = str(error)
            self.close()
            stop.wait(_RECHECK_MS / 1000)  # one that fails at once again must not spin
            return None

    def _watch(self) -> None:
        try:
            self._watcher = _open_watcher(self.folder)
        except (OSError, RuntimeError) as error:
            if self._unwatchable != str(error):
                logger.error(
                    "cannot watch the DAGs folder %s (%s): looking for changes every %g s",
                    self.folder, error, _RECHECK_MS / 1000,
                )  # fmt: skip
            self._unwatchable = str(error)


def _identity(folder: str) -> tuple[int, int] | None:
    try:
        status = os.stat(folder)
    except OSError:
        return None
    return (status.st_dev, status.st_ino) if stat.S_ISDIR(status.st_mode) else None


def _open_watcher(folder: str) -> RustNotify:
    # watchfiles' RustNotify on its own thread, not the file triggers' shared 1 ms watch: a
    # reload needs no millisecond latency, and a 50 ms step keeps an idle daemon near 0 % CPU.
    return RustNotify([folder], False, False, 300, True, True)


async def _reload_all(engine: Engine, changed: set[str]) -> None:
    """Reload the DAG files among the `changed` paths, and every file whose stamp moved since
    it was last loaded: a change through a symlink (a ConfigMap's `..data`) or in a swapped
    folder has no event of its own."""
    folder = str(engine.dagbag.folder)
    stamped = await anyio.to_thread.run_sync(changed_since_loaded, engine.dagbag)
    if await anyio.Path(folder).is_dir():
        forget_missing_folder(engine.dagbag)
    paths = sorted({*_changed_files(folder, changed), *stamped})
    await _check_at_once(engine, paths)
    for path in paths:
        await reload_file(engine, path)


async def _check_at_once(engine: Engine, paths: list[str]) -> None:
    """Check several changed files together: `reload_file` then finds each verdict cached."""
    if len(paths) > 1:
        limits = ImportLimits.of(engine.settings)
        check = partial(check_files, paths, limits, state_dir=engine.settings.state_dir)
        await anyio.to_thread.run_sync(check)


async def reload_file(engine: Engine, path: str) -> None:
    """Import `path` again (or drop its DAGs if it is gone) and hand the result to the engine."""
    limits = ImportLimits.of(engine.settings)
    load = partial(_import_if_present, path, limits, engine.settings.state_dir)
    stamp, result = await anyio.to_thread.run_sync(load)
    change = await engine.apply_file(result)
    note_stamp(engine.dagbag, path, stamp)
    if change.broken:
        for error in result.errors:
            logger.error("DAG file %s is broken, its last good version goes on: %s", path, error)
    for dag in change.loaded:
        logger.info("loaded DAG %s from %s", dag.dag_id, path)
    for dag_id in change.removed:
        logger.info("DAG %s is gone from %s: it no longer starts runs", dag_id, path)


def _import_if_present(
    path: str, limits: ImportLimits, state_dir: Path
) -> tuple[Stamp | None, FileResult]:
    """The file's stamp (taken first: an edit during the import changes it again) and result."""
    stamp = file_stamps([path]).get(path)
    if stamp is None or not os.path.isfile(path):
        return None, FileResult(path)
    return stamp, load_checked_file(path, limits, state_dir=state_dir)


def _changed_files(folder: str, changed: set[str]) -> list[str]:
    """The DAG files among the changed paths (`_*` and `.*` names are not DAG files)."""
    paths = []
    for path in changed:
        parts = os.path.relpath(path, folder).split(os.sep)
        if path.endswith(".py") and not any(p.startswith(("_", ".")) for p in parts):
            paths.append(path)
    return sorted(paths)
