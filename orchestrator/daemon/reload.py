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
import threading
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import anyio
from anyio.abc import TaskStatus
from watchfiles._rust_notify import RustNotify

from orchestrator.loading.dagbag import changed_since_loaded, load_checked_file
from orchestrator.loading.importcheck import ImportLimits, check_files
from orchestrator.loading.importer import FileResult

if TYPE_CHECKING:
    from orchestrator.scheduling.engine import Engine

logger = logging.getLogger("orchestrator.reload")

_DEBOUNCE_MS = 200  # an editor's save is often several writes: reload once
_STEP_MS = 50


async def follow_dag_folder(
    engine: Engine, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
) -> None:
    """Reload each DAG file of the engine's folder that changes, until cancelled.

    Started with `await task_group.start(follow_dag_folder, engine)`, it returns once the
    folder is watched: an edit made after that is never missed.
    """
    folder = str(engine.dagbag.folder)
    if not await anyio.Path(folder).is_dir():
        logger.warning("the DAGs folder %s does not exist: not watching it for changes", folder)
        task_status.started()
        return
    stop = threading.Event()
    watcher = await anyio.to_thread.run_sync(_open_watcher, folder)
    task_status.started()  # the OS watch is in place: no later edit is missed
    try:
        # Edits made while the engine loaded the folder, before the watch: found by their stamps.
        await _reload_all(
            engine, await anyio.to_thread.run_sync(changed_since_loaded, engine.dagbag)
        )
        while True:
            changes = await anyio.to_thread.run_sync(
                watcher.watch, _DEBOUNCE_MS, _STEP_MS, 0, stop, abandon_on_cancel=True
            )
            if isinstance(changes, set):
                await _reload_all(engine, _changed_files(folder, {path for _, path in changes}))
    finally:
        stop.set()  # ends the abandoned `watch` call within one step


def _open_watcher(folder: str) -> RustNotify:
    # watchfiles' RustNotify on its own thread, not the file triggers' shared 1 ms watch: a
    # reload needs no millisecond latency, and a 50 ms step keeps an idle daemon near 0 % CPU.
    return RustNotify([folder], False, False, 300, True, True)


async def _reload_all(engine: Engine, paths: list[str]) -> None:
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
    result = await anyio.to_thread.run_sync(load)
    change = await engine.apply_file(result)
    if change.broken:
        for error in result.errors:
            logger.error("DAG file %s is broken, its last good version goes on: %s", path, error)
    for dag in change.loaded:
        logger.info("loaded DAG %s from %s", dag.dag_id, path)
    for dag_id in change.removed:
        logger.info("DAG %s is gone from %s: it no longer starts runs", dag_id, path)


def _import_if_present(path: str, limits: ImportLimits, state_dir: Path) -> FileResult:
    if not os.path.isfile(path):
        return FileResult(path)
    return load_checked_file(path, limits, state_dir=state_dir)


def _changed_files(folder: str, changed: set[str]) -> list[str]:
    """The DAG files among the changed paths (`_*` and `.*` names are not DAG files)."""
    paths = []
    for path in changed:
        parts = os.path.relpath(path, folder).split(os.sep)
        if path.endswith(".py") and not any(p.startswith(("_", ".")) for p in parts):
            paths.append(path)
    return sorted(paths)
