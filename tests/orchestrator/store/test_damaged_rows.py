"""An unreadable JSON value: listings go on with the row marked damaged; db check names it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from damagekit import DAMAGES, check_line, damage, fill_state

from orchestrator.store import SqliteStore, open_store

Listing = Callable[[SqliteStore], Awaitable[list[Any]]]


async def _task_instances(store: SqliteStore) -> list[Any]:
    return [*await store.list_task_instances("run-1"), *await store.list_task_instances("run-2")]


#: Per damaged table: the store's listing of it, and how the damaged row is recognised.
LISTINGS: dict[str, tuple[Listing, Callable[[Any], bool]]] = {
    "runs": (lambda store: store.list_runs(), lambda run: run.run_id == "run-1"),
    "task_instances": (_task_instances, lambda ti: ti.run_id == "run-1"),
    "triggers": (lambda store: store.list_triggers(), lambda row: row.run_id == "run-1"),
    "events": (lambda store: store.list_events(), lambda event: event.event_id == 1),
    "run_sources": (lambda store: store.list_run_sources(), lambda row: row.source == "files-1"),
    "webhooks": (lambda store: store.list_webhooks(), lambda hook: hook.name == "hook-1"),
}


@pytest.mark.parametrize("name", [name for name in DAMAGES if DAMAGES[name].table in LISTINGS])
async def test_a_damaged_row_is_listed_as_damaged_beside_the_others(
    state_dir: Path, name: str
) -> None:
    one = DAMAGES[name]
    await fill_state(state_dir)
    damage(state_dir, one)
    listing, is_damaged_row = LISTINGS[one.table]
    async with open_store(state_dir, readonly=True) as store:
        rows = await listing(store)
    assert len(rows) == 2
    damaged = [row for row in rows if is_damaged_row(row)]
    assert len(damaged) == 1 and damaged[0].damaged.startswith(f"{one.column} is not")
    assert [row.damaged for row in rows if not is_damaged_row(row)] == [None]


async def test_placeholders_stand_in_for_what_cannot_be_read(state_dir: Path) -> None:
    await fill_state(state_dir)
    damage(state_dir, *(DAMAGES[name] for name in ("runs.conf", "webhooks.filters")))
    damage(state_dir, DAMAGES["triggers.kwargs"], DAMAGES["task_instances.next_call"])
    async with open_store(state_dir, readonly=True) as store:
        run = await store.get_run("run-1")
        hooks = await store.list_webhooks()
        triggers = await store.list_triggers()
        instances = await store.list_task_instances("run-1")
    assert run is not None and run.conf == {} and run.damaged is not None
    assert hooks[0].filters == [] and hooks[0].conf_map == {"sha": "after"}
    assert triggers[0].kwargs == {} and triggers[0].cursor == {"seen": 1}
    assert instances[0].next_call is None and "next_call is not valid JSON" in str(
        instances[0].damaged
    )


@pytest.mark.parametrize("name", list(DAMAGES))
async def test_db_check_names_the_table_the_row_and_the_column(state_dir: Path, name: str) -> None:
    await fill_state(state_dir)
    damage(state_dir, DAMAGES[name])
    async with open_store(state_dir, readonly=True) as store:
        problems = await store.damaged_rows()
        file_problems = await store.integrity_check()
    assert len(problems) == 1 and problems[0].startswith(check_line(DAMAGES[name])), problems
    assert file_problems == []  # the file is sound: nothing to refuse at start-up


async def test_a_sound_state_has_no_damaged_rows(state_dir: Path) -> None:
    await fill_state(state_dir)
    async with open_store(state_dir, readonly=True) as store:
        assert await store.damaged_rows() == []
        assert all(run.damaged is None for run in await store.list_runs())
