"""The daemon reloads DAG files when they change: no restart to deploy a pipeline.

The DAGs folder is watched (the same shared watch the file triggers use). A changed file is
imported again in a worker thread; one that now fails keeps its last good DAGs running (their
schedules and run triggers go on) and its error is recorded for `orchestrator dags list`; a
deleted file's DAGs stop. Runs already going keep the version they started with.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

import anyio

from orchestrator.dagbag import dag_files
from orchestrator.loader import FileResult, load_dag_file
from triggers.watch import WatchBatch, watch_directory

if TYPE_CHECKING:
    from orchestrator.engine import Engine

logger = logging.getLogger("orchestrator.reload")


async def follow_dag_folder(engine: Engine) -> None:
    """Reload each DAG file of the engine's folder that changes, until cancelled."""
    folder = str(engine.dagbag.folder)
    if not await anyio.Path(folder).is_dir():
        logger.warning("the DAGs folder %s does not exist: not watching it for changes", folder)
        return
    async with watch_directory(folder, recursive=True) as subscription:
        while True:
            batch = await subscription.receive()
            for path in _changed_files(folder, batch, engine):
                await reload_file(engine, path)


async def reload_file(engine: Engine, path: str) -> None:
    """Import `path` again (or drop its DAGs if it is gone) and hand the result to the engine."""
    result = await anyio.to_thread.run_sync(_import_if_present, path)
    change = await engine.apply_file(result)
    if change.broken:
        for error in result.errors:
            logger.error("DAG file %s is broken, its last good version goes on: %s", path, error)
    for dag in change.loaded:
        logger.info("loaded DAG %s from %s", dag.dag_id, path)
    for dag_id in change.removed:
        logger.info("DAG %s is gone from %s: it no longer starts runs", dag_id, path)


def _import_if_present(path: str) -> FileResult:
    return load_dag_file(path) if os.path.isfile(path) else FileResult(path)


def _changed_files(folder: str, batch: WatchBatch, engine: Engine) -> list[str]:
    """The DAG files a watch batch touched (all of them, and the known ones, on a rescan)."""
    if batch.rescan:
        known = set(engine.dagbag.files.values())
        known.update(error.file for error in engine.dagbag.errors if error.file)
        return sorted(known | set(dag_files(Path(folder))))
    paths = []
    for relative in batch.files:
        parts = relative.split("/")
        if relative.endswith(".py") and not any(p.startswith(("_", ".")) for p in parts):
            paths.append(os.path.join(folder, *parts))
    return sorted(paths)
