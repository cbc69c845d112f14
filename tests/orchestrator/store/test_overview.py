"""The web UI's reads: exact results on seeded data, keyset paging, indexed plans, own connection.

The data comes from `bench/ui_data.py` (the benchmark's seeding, at a small size), so the
benchmark's figures are for reads these tests hold to the same answers.
"""

from __future__ import annotations

import importlib.util
import os
import re
import sqlite3
import sys
import threading
from collections import Counter
from collections.abc import Callable
from contextlib import closing
from pathlib import Path
from types import ModuleType
from typing import Any

import anyio
import pytest

from orchestrator.errors import StoreError
from orchestrator.state import RunState, TaskState
from orchestrator.store import SqliteStore, WriteBatch, open_store
from orchestrator.store.records import DagRecord

BENCH = Path(__file__).resolve().parents[3] / "bench"
SIZE = {"runs": 60, "task_instances": 500, "dags": 4, "wide_tasks": 10, "wide_runs": 12}


def _load_ui_data() -> ModuleType:
    spec = importlib.util.spec_from_file_location("ui_data", BENCH / "ui_data.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["ui_data"] = module  # dataclasses look their module up while they are built
    spec.loader.exec_module(module)
    return module


ui_data = _load_ui_data()


@pytest.fixture
async def seeded(state_dir: Path) -> Any:
    """`state_dir` filled by the benchmark's seeding at SIZE; what was written."""
    return await ui_data.seed_ui_data(state_dir, **SIZE)


def _newest_first(records: list[Any]) -> list[Any]:
    return list(reversed(records))  # the seeding writes oldest first, each later than the last


async def test_the_seeding_writes_the_size_asked_for(state_dir: Path, seeded: Any) -> None:
    with closing(sqlite3.connect(state_dir / "orchestrator.db")) as connection:
        counts = [
            connection.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
            for t in ("runs", "task_instances")
        ]
    assert counts == [SIZE["runs"], SIZE["task_instances"]]
    assert len(seeded.runs) == SIZE["runs"] and len(seeded.task_instances) == SIZE["task_instances"]


async def test_run_counts_since_count_runs_queued_since_by_state(
    state_dir: Path, seeded: Any
) -> None:
    since = seeded.runs[40].queued_at
    expected = dict.fromkeys(RunState, 0) | Counter(r.state for r in seeded.runs[40:])
    async with open_store(state_dir) as store:
        ui = await store.ui_reads()
        assert await ui.run_counts_since(since) == expected
        assert sum((await ui.run_counts_since(0.0)).values()) == SIZE["runs"]
        assert await ui.run_counts_since(ui_data.NOW) == dict.fromkeys(RunState, 0)


async def test_recent_runs_by_dag_are_each_dags_newest(state_dir: Path, seeded: Any) -> None:
    async with open_store(state_dir) as store:
        batch = WriteBatch()
        batch.upsert_dag(DagRecord(dag_id="idle", fileloc="/dags/idle.py"))
        await store.commit(batch)
        recent = await (await store.ui_reads()).recent_runs_by_dag(3)
    dag_ids = sorted(dag.dag_id for dag in seeded.dags)
    assert list(recent) == sorted([*dag_ids, "idle"])
    for dag_id in dag_ids:
        assert recent[dag_id] == _newest_first([r for r in seeded.runs if r.dag_id == dag_id])[:3]
    assert recent["idle"] == []


async def test_grid_pages_follow_each_other_without_overlap_or_gap(
    state_dir: Path, seeded: Any
) -> None:
    wide = _newest_first([r for r in seeded.runs if r.dag_id == ui_data.WIDE])
    pages = []
    async with open_store(state_dir) as store:
        ui = await store.ui_reads()
        before = None
        while (page := await ui.grid(ui_data.WIDE, 5, before)).runs:
            pages.append(page)
            before = page.runs[-1].run_id
    assert [len(page.runs) for page in pages] == [5, 5, 2]
    assert [run for page in pages for run in page.runs] == wide
    for page in pages:
        assert list(page.task_instances) == [run.run_id for run in page.runs]
        for run in page.runs:
            mine = [ti for ti in seeded.task_instances if ti.run_id == run.run_id]
            assert page.task_instances[run.run_id] == mine
        assert page.task_ids() == [f"task-{n:03d}" for n in range(SIZE["wide_tasks"])]


async def test_an_unknown_dag_has_an_empty_grid(state_dir: Path, seeded: Any) -> None:
    async with open_store(state_dir) as store:
        grid = await (await store.ui_reads()).grid("nope", 25)
    assert grid.runs == [] and grid.task_instances == {} and grid.task_ids() == []


async def test_failures_are_listed_last_ended_first_with_their_dag(
    state_dir: Path, seeded: Any
) -> None:
    runs = {run.run_id: run for run in seeded.runs}
    failed = [ti for ti in seeded.task_instances if ti.state is TaskState.FAILED]
    expected = [(runs[ti.run_id].dag_id, ti) for ti in _newest_first(failed)]
    listed = []
    async with open_store(state_dir) as store:
        ui = await store.ui_reads()
        before = None
        while page := await ui.list_task_instances_by_state(TaskState.FAILED, 2, before):
            listed.extend((row.dag_id, row.task_instance) for row in page)
            before = page[-1].task_instance.key
    assert len(expected) == 6 and listed == expected


async def test_a_runs_tries_come_in_one_list(state_dir: Path, seeded: Any) -> None:
    run_id = next(r.run_id for r in seeded.runs if r.dag_id == ui_data.WIDE)
    async with open_store(state_dir) as store:
        tries = await (await store.ui_reads()).list_run_tries(run_id)
    assert tries == [attempt for attempt in seeded.tries if attempt.run_id == run_id]
    assert len(tries) == SIZE["wide_tasks"]


async def test_store_size_counts_the_database_and_its_log(state_dir: Path, seeded: Any) -> None:
    async with open_store(state_dir) as store:
        batch = WriteBatch()
        batch.upsert_dag(DagRecord(dag_id="idle", fileloc="/dags/idle.py"))
        await store.commit(batch)  # something in the -wal file
        files = [Path(store.path), Path(f"{store.path}-wal")]
        assert store.store_size() == sum(os.stat(path).st_size for path in files)
        assert os.stat(files[1]).st_size > 0


#: Per read of the benchmark, the indexes its plan must use.
INDEXES = {
    "run_counts_since (Home, 24 h)": {"runs_by_state"},
    "list_task_instances_by_state failed, 50 (Home)": {"task_instances_by_state"},
    "list_task_instances_by_state failed, page 2": {"task_instances_by_state"},
    "recent_runs_by_dag 10 (DAGs)": {"runs_by_dag"},
    "grid wide, 25 runs x 200 tasks": {"runs_by_dag", "sqlite_autoindex_task_instances_1"},
    "grid wide, page 2": {"runs_by_dag"},
    "grid dag-1, 25 runs": {"runs_by_dag", "sqlite_autoindex_task_instances_1"},
    "get_run (Run)": {"sqlite_autoindex_runs_1"},
    "list_task_instances 200 (Run)": {"sqlite_autoindex_task_instances_1"},
    "list_run_tries 200 (Run)": {"sqlite_autoindex_task_tries_1"},
    "list_events run_id (Run)": {"events_by_run"},
    "list_events 50 (Events)": set(),
    "list_events dag-1, 50, page 2 (Events)": {"events_by_dag"},
    "list_runs 50 (Runs)": {"runs_by_queued_at"},
    "list_triggers (Triggers)": set(),
    "list_run_sources (Triggers)": set(),
}
#: Scans that read in the order asked for and stop at the page's LIMIT: not a full scan.
ORDERED_SCANS = {"SCAN events", "SCAN runs USING INDEX runs_by_queued_at"}
BIG_TABLES = re.compile(r"\bSCAN (runs|task_instances|task_tries|events|ti|latest)\b")


async def test_every_ui_read_searches_an_index(state_dir: Path, seeded: Any) -> None:
    reads = ui_data.reads(seeded)
    assert set(reads) == set(INDEXES)
    async with open_store(state_dir) as store:
        ui = await store.ui_reads()
        for name, read in reads.items():
            plan = await _plan_of(ui, read)
            used = set(re.findall(r"USING (?:COVERING )?INDEX (\w+)", "\n".join(plan)))
            assert INDEXES[name] <= used, (name, plan)
            scans = [line for line in plan if BIG_TABLES.search(line)]
            assert set(scans) <= ORDERED_SCANS, (name, plan)


async def _plan_of(ui: SqliteStore, read: Callable[[SqliteStore], Any]) -> list[str]:
    """The query plan of every statement `read` runs, line by line."""
    plan: list[str] = []
    fetch = ui._fetch

    async def explained(sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
        plan.extend(row[3] for row in await fetch(f"EXPLAIN QUERY PLAN {sql}", params))
        return await fetch(sql, params)

    ui._fetch = explained  # type: ignore[method-assign]
    try:
        await read(ui)
    finally:
        del ui._fetch
    return plan


async def test_a_long_ui_read_does_not_hold_up_the_engines_reads(
    state_dir: Path, seeded: Any
) -> None:
    entered, release = threading.Event(), threading.Event()

    def hold() -> int:
        entered.set()
        release.wait(10)  # bounded, so a failing test ends instead of hanging
        return 1

    async with open_store(state_dir) as store:
        ui = await store.ui_reads()
        await ui._reader.create_function("hold", 0, hold)
        async with anyio.create_task_group() as task_group:
            task_group.start_soon(ui._fetch, "SELECT hold()")
            try:
                assert await anyio.to_thread.run_sync(entered.wait, 30)
                with anyio.fail_after(5):  # a shared connection would wait for `release`
                    run = await store.get_run(seeded.runs[0].run_id)
                assert not release.is_set() and run == seeded.runs[0]
            finally:
                release.set()


async def test_ui_reads_cannot_write_and_close_with_the_store(state_dir: Path, seeded: Any) -> None:
    async with open_store(state_dir) as store:
        ui = await store.ui_reads()
        assert ui is not store and ui._reader is not store._reader
        assert (await store.ui_reads())._reader is ui._reader  # one connection for every page
        with pytest.raises(StoreError, match="opened read-only"):
            await ui.commit(_a_batch())
        with pytest.raises(sqlite3.OperationalError, match=r"readonly|query_only"):
            await ui._fetch("DELETE FROM runs")
    with pytest.raises(StoreError, match="is closed"):
        await ui.get_run(seeded.runs[0].run_id)
    with pytest.raises(StoreError, match="is closed"):
        await store.ui_reads()


async def test_a_read_only_store_reads_for_the_ui_on_its_one_connection(
    state_dir: Path, seeded: Any
) -> None:
    async with open_store(state_dir, readonly=True) as store:
        ui = await store.ui_reads()
        counts = await ui.run_counts_since(0.0)
    assert ui is store and sum(counts.values()) == SIZE["runs"]


async def test_damaged_json_reads_as_placeholders_on_the_ui_pages(
    state_dir: Path, seeded: Any
) -> None:
    run = _newest_first([r for r in seeded.runs if r.dag_id == ui_data.WIDE])[0]
    failed = [ti for ti in seeded.task_instances if ti.state is TaskState.FAILED][-1]
    with closing(sqlite3.connect(state_dir / "orchestrator.db")) as connection, connection:
        connection.execute("UPDATE runs SET conf = '{\"cut' WHERE run_id = ?", (run.run_id,))
        connection.execute(
            "UPDATE task_instances SET next_call = '[1]' WHERE run_id = ? AND task_id = ?",
            (failed.run_id, failed.task_id),
        )
    async with open_store(state_dir) as store:
        ui = await store.ui_reads()
        grid = await ui.grid(ui_data.WIDE, 25)
        recent = await ui.recent_runs_by_dag(1)
        failures = await ui.list_task_instances_by_state(TaskState.FAILED, 1)
    assert grid.runs[0].conf == {} and "conf is not valid JSON" in str(grid.runs[0].damaged)
    assert recent[ui_data.WIDE][0].damaged == grid.runs[0].damaged
    assert [row.task_instance.damaged for row in failures] == [
        "next_call is not a JSON object (it holds a list)"
    ]
    assert failures[0].task_instance.next_call is None


def _a_batch() -> WriteBatch:
    batch = WriteBatch()
    batch.upsert_dag(DagRecord(dag_id="idle", fileloc="/dags/idle.py"))
    return batch
