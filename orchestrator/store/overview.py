"""The web UI's reads: what its pages show at a glance, each one indexed query at any size.

The UI reads on a connection of its own (`UiConnection`, opened on first use and closed with
the store), so a heavy page never makes the engine's reads wait behind it: one aiosqlite
connection runs one statement at a time. `SqliteStore.ui_reads()` hands out the store's reads
on that connection; `OverviewReads` adds the ones only the UI needs. Every listing pages by
keyset (the last row of the page before), never by OFFSET, and every query is a search on an
index (`tests/orchestrator/store/test_overview.py` checks the query plans), so a page costs
the same at 100 runs and at 10,000.
"""

from __future__ import annotations

import json
import os
from contextlib import AsyncExitStack
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol

import aiosqlite
import anyio

from orchestrator.errors import StoreError
from orchestrator.state import RunState, TaskState
from orchestrator.store.base import TaskKey
from orchestrator.store.connection import connect_reader
from orchestrator.store.records import (
    DagGrid,
    DagTaskInstance,
    RunRecord,
    TaskInstanceRecord,
    TryRecord,
)
from orchestrator.store.rows import (
    RUN_COLUMNS,
    TASK_INSTANCE_COLUMNS,
    TRY_COLUMNS,
    run_from_row,
    task_instance_from_row,
    try_from_row,
)
from orchestrator.store.walmark import wal_path


def _qualified(table: str, columns: str) -> str:
    return ", ".join(f"{table}.{column.strip()}" for column in columns.split(","))


_RUN_STATES = tuple(state.value for state in RunState)
# Naming every state turns "since" into a search of runs_by_state (state, queued_at), which
# holds both columns: the count never reads the table itself.
_RUN_COUNTS = (
    f"SELECT state, count(*) FROM runs WHERE state IN ({', '.join('?' for _ in _RUN_STATES)})"
    " AND queued_at >= ? GROUP BY state"
)
# Per DAG, its newest runs through runs_by_dag: a few index steps per DAG, however many runs
# the store holds (a window function over all runs would read every one of them).
_RECENT_RUNS = (
    f"SELECT {_qualified('runs', RUN_COLUMNS)} FROM dags JOIN runs ON runs.rowid IN ("
    " SELECT latest.rowid FROM runs AS latest WHERE latest.dag_id = dags.dag_id"
    " ORDER BY latest.queued_at DESC, latest.rowid DESC LIMIT ?)"
    " ORDER BY runs.dag_id, runs.queued_at DESC, runs.rowid DESC"
)
_GRID_TASK_INSTANCES = (
    f"SELECT {TASK_INSTANCE_COLUMNS} FROM task_instances"
    " WHERE run_id IN (SELECT value FROM json_each(?)) ORDER BY rowid"
)
_BY_STATE = (
    f"SELECT runs.dag_id, {_qualified('ti', TASK_INSTANCE_COLUMNS)}"
    " FROM task_instances AS ti JOIN runs ON runs.run_id = ti.run_id"
    " WHERE ti.state = ? AND ti.ended_at IS NOT NULL {after}"
    " ORDER BY ti.ended_at DESC, ti.rowid DESC LIMIT ?"
)
_AFTER_TASK_INSTANCE = (
    "AND (ti.ended_at, ti.rowid) < (SELECT ended_at, rowid FROM task_instances"
    " WHERE run_id = ? AND task_id = ? AND map_index = ?)"
)
_RUN_TRIES = (
    f"SELECT {TRY_COLUMNS} FROM task_tries WHERE run_id = ? ORDER BY task_id, map_index, try_number"
)


# Events per run trigger, read from events_by_source alone (it holds every column named).
_EVENTS_BY_SOURCE = (
    "SELECT dag_id, source, count(*), max(received_at) FROM events GROUP BY dag_id, source"
)


class UiConnection:
    """The UI's own read-only connection: opened on first use, closed with the store.

    Same pragmas as the engine's reader, `mode=ro`, and `query_only` besides, so nothing a
    page does can write. Many pages at once share it; aiosqlite runs their statements in turn.
    """

    def __init__(self, db_path: Path, synchronous: str) -> None:
        self._db_path = db_path
        self._synchronous = synchronous
        self._stack = AsyncExitStack()
        self._lock = anyio.Lock()
        self._connection: aiosqlite.Connection | None = None
        self._closed = False

    async def get(self) -> aiosqlite.Connection:
        """The connection, opened now if this is the first call."""
        async with self._lock:
            if self._closed:
                raise StoreError(f"The store at {self._db_path} is closed; open it again.")
            if self._connection is None:
                opening = connect_reader(self._db_path, self._synchronous, check=False)
                connection = await self._stack.enter_async_context(opening)
                await connection.execute("PRAGMA query_only = ON")
                self._connection = connection
            return self._connection

    async def __aenter__(self) -> UiConnection:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        with anyio.CancelScope(shield=True):
            async with self._lock:
                self._closed = True
                await self._stack.aclose()


class _Reader(Protocol):
    path: str

    async def _fetch(self, sql: str, params: tuple[Any, ...] = ()) -> list[Any]: ...

    async def list_runs(
        self,
        *,
        dag_id: str | None = None,
        state: RunState | None = None,
        limit: int = 50,
        before: str | None = None,
    ) -> list[RunRecord]: ...


class OverviewReads:
    """The reads only the web UI needs; `SqliteStore` has them through this mixin."""

    async def run_counts_since(self: _Reader, since: float) -> dict[RunState, int]:
        """How many runs queued at `since` or later are in each state (every state named)."""
        rows = await self._fetch(_RUN_COUNTS, (*_RUN_STATES, since))
        counts = dict.fromkeys(RunState, 0)
        counts.update((RunState(state), count) for state, count in rows)
        return counts

    async def recent_runs_by_dag(self: _Reader, per_dag: int) -> dict[str, list[RunRecord]]:
        """Each known DAG's last `per_dag` runs, newest first (an empty list for none yet)."""
        _check_limit(per_dag)
        dag_ids = await self._fetch("SELECT dag_id FROM dags ORDER BY dag_id")
        recent: dict[str, list[RunRecord]] = {dag_id: [] for (dag_id,) in dag_ids}
        for row in await self._fetch(_RECENT_RUNS, (per_dag,)):
            recent.setdefault(row[1], []).append(run_from_row(row))
        return recent

    async def grid(self: _Reader, dag_id: str, limit: int, before: str | None = None) -> DagGrid:
        """A DAG's last `limit` runs, newest first, with all their task instances.

        `before` is a run id, as for `list_runs`: the page starts after that run.
        """
        runs = await self.list_runs(dag_id=dag_id, limit=limit, before=before)
        run_ids = [run.run_id for run in runs]
        rows = await self._fetch(_GRID_TASK_INSTANCES, (json.dumps(run_ids),)) if runs else []
        # 25 runs of 200 tasks are 5,000 rows: decoded in a worker thread, because decoding
        # them here held the event loop (and every other page, and the engine) ~15 ms.
        task_instances = await anyio.to_thread.run_sync(_by_run, run_ids, rows)
        return DagGrid(runs=runs, task_instances=task_instances)

    async def list_task_instances_by_state(
        self: _Reader, state: TaskState, limit: int = 50, before: TaskKey | None = None
    ) -> list[DagTaskInstance]:
        """Task instances in `state` that ended, last ended first, each with its run's DAG.

        For finished states (recent failures); instances without an end time are not listed.
        `before` is a task instance's key: the page starts after it.
        """
        _check_limit(limit)
        after, params = ("", ()) if before is None else (_AFTER_TASK_INSTANCE, before)
        sql = _BY_STATE.format(after=after)
        rows = await self._fetch(sql, (state.value, *params, limit))
        return [
            DagTaskInstance(dag_id=row[0], task_instance=task_instance_from_row(row[1:]))
            for row in rows
        ]

    async def list_run_tries(self: _Reader, run_id: str) -> list[TryRecord]:
        """Every try of a run's task instances, by task id, map index and try number."""
        return [try_from_row(row) for row in await self._fetch(_RUN_TRIES, (run_id,))]

    async def event_counts_by_source(self: _Reader) -> dict[tuple[str, str], tuple[int, float]]:
        """Per (DAG, run trigger): how many events it recorded, and when the last one came."""
        rows = await self._fetch(_EVENTS_BY_SOURCE)
        return {(dag_id, source): (count, last) for dag_id, source, count, last in rows}

    def store_size(self: _Reader) -> int:
        """Bytes on disk: the database file and its write-ahead log."""
        total = 0
        for path in (Path(self.path), wal_path(Path(self.path))):
            try:
                total += os.stat(path).st_size
            except FileNotFoundError:  # no -wal between a clean stop and the next writer
                pass
        return total


def _check_limit(limit: int) -> None:
    if limit < 0:
        raise ValueError(f"limit must be 0 or more, not {limit}")


def _by_run(run_ids: list[str], rows: list[Any]) -> dict[str, list[TaskInstanceRecord]]:
    task_instances: dict[str, list[TaskInstanceRecord]] = {run_id: [] for run_id in run_ids}
    for row in rows:
        task_instances[row[0]].append(task_instance_from_row(row))
    return task_instances
