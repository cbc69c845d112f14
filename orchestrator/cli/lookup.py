"""Finding runs, task instances and tries in the store, with errors that list what exists.

A mistyped run id or task id is the most common mistake at the command line, so every
"not found" names the nearest matches and what there is to choose from.
"""

from __future__ import annotations

import difflib
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

from orchestrator.cli.display import task_label
from orchestrator.config import Settings
from orchestrator.errors import RunError
from orchestrator.store import open_store
from orchestrator.store.base import Store
from orchestrator.store.records import RunRecord, TaskInstanceRecord, TryRecord
from orchestrator.store.statedir import DB_FILENAME

_SHOWN = 5


def has_state(settings: Settings) -> bool:
    """True once a run has created the database in the state directory.

    Checked before opening, so that "nothing recorded yet" is a normal, empty answer for the
    list commands rather than an error.
    """
    return (settings.state_dir / DB_FILENAME).exists()


@asynccontextmanager
async def open_state(settings: Settings) -> AsyncIterator[Store]:
    """The store, read-only: a command that only looks must never create or migrate anything."""
    async with open_store(
        settings.state_dir, synchronous=settings.synchronous, readonly=True
    ) as store:
        yield store


async def find_run(store: Store, run_id: str) -> RunRecord:
    """The run `run_id`; raises `RunError` naming close matches and recent runs."""
    run = await store.get_run(run_id)
    if run is not None:
        return run
    known = [run.run_id for run in await store.list_runs(limit=500)]
    raise RunError(unknown_run_message(run_id, known, where=store.path))


def unknown_run_message(run_id: str, known: Sequence[str], *, where: str) -> str:
    """Why `run_id` was not found, with the likeliest matches first."""
    if not known:
        return f"there is no run {run_id!r}: no run is recorded in {where} yet"
    prefixed = [candidate for candidate in known if candidate.startswith(run_id)]
    close = difflib.get_close_matches(run_id, known, n=3, cutoff=0.6)
    suggestions = list(dict.fromkeys([*prefixed, *close]))[:_SHOWN]
    if suggestions:
        return (
            f"there is no run {run_id!r} in {where}; did you mean {_listing(suggestions)}? "
            "(`orchestrator runs list` shows the runs)"
        )
    return (
        f"there is no run {run_id!r} in {where}. Recent runs: {_listing(known[:_SHOWN])} "
        "(`orchestrator runs list` shows more)"
    )


async def find_task_instance(
    store: Store, run: RunRecord, task_id: str, map_index: int | None
) -> TaskInstanceRecord:
    """The task instance of `run`; raises `RunError` listing the run's tasks or instances."""
    task_instances = await store.list_task_instances(run.run_id)
    matches = [ti for ti in task_instances if ti.task_id == task_id]
    if not matches:
        task_ids = list(dict.fromkeys(ti.task_id for ti in task_instances))
        close = difflib.get_close_matches(task_id, task_ids, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise RunError(
            f"run {run.run_id!r} has no task {task_id!r}{hint}; its tasks: {_listing(task_ids)}"
        )
    return _pick_instance(run, task_id, matches, map_index)


def _pick_instance(
    run: RunRecord, task_id: str, matches: list[TaskInstanceRecord], map_index: int | None
) -> TaskInstanceRecord:
    expanded = sorted(ti.map_index for ti in matches if ti.map_index >= 0)
    wanted = map_index if map_index is not None else (-1 if not expanded else None)
    for ti in matches:
        if ti.map_index == wanted:
            return ti
    if not expanded:
        raise RunError(f"task {task_id!r} of run {run.run_id!r} is not expanded: omit --map-index")
    choices = f"{expanded[0]} to {expanded[-1]}" if len(expanded) > 1 else str(expanded[0])
    if map_index is None:
        raise RunError(
            f"task {task_id!r} of run {run.run_id!r} is expanded into {len(expanded)} "
            f"instances; choose one with --map-index ({choices})"
        )
    raise RunError(
        f"task {task_id!r} of run {run.run_id!r} has no instance {map_index}; "
        f"its map indexes: {choices}"
    )


async def find_try(store: Store, ti: TaskInstanceRecord, try_number: int | None) -> TryRecord:
    """Try `try_number` of a task instance (the latest when None), or a `RunError` listing them."""
    tries = await store.list_tries(ti.run_id, ti.task_id, ti.map_index)
    label = task_label(ti.task_id, ti.map_index)
    if not tries:
        raise RunError(
            f"task {label!r} of run {ti.run_id!r} has no log: it has not started yet "
            f"(state: {ti.state})"
        )
    if try_number is None:
        return tries[-1]
    for attempt in tries:
        if attempt.try_number == try_number:
            return attempt
    numbers = ", ".join(str(attempt.try_number) for attempt in tries)
    raise RunError(
        f"task {label!r} of run {ti.run_id!r} has no try {try_number}; its tries: {numbers}"
    )


def _listing(items: Sequence[str]) -> str:
    return ", ".join(repr(item) for item in items)
