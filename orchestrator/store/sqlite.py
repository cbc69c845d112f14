"""`SqliteStore`: the store on one SQLite file, and `open_store`, the only way to get one.

One writer connection, whose own thread commits in groups (group commit, see `writer.py`),
and one separate read-only connection for every read, so reads never queue behind a
transaction and, in WAL mode, always see the last committed state.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiosqlite
import anyio

from orchestrator.errors import StoreError
from orchestrator.state import RunState
from orchestrator.store.alertrows import ALERT_COLUMNS, AlertRecord, alert_from_row
from orchestrator.store.apirows import (
    TOKEN_COLUMNS,
    WEBHOOK_COLUMNS,
    token_from_row,
    webhook_from_row,
)
from orchestrator.store.base import Store, StoreStatistics, WriteBatch
from orchestrator.store.checkpoints import WAL_SIZE_LIMIT, BackgroundCheckpoints
from orchestrator.store.connection import (
    check_synchronous,
    connect_checkpointer,
    connect_reader,
    connect_writer,
)
from orchestrator.store.damagedrows import find_damaged_rows
from orchestrator.store.migrations import check_version, migrate, read_version
from orchestrator.store.overview import OverviewReads, UiConnection
from orchestrator.store.records import (
    DagRecord,
    EventRecord,
    ImportErrorRecord,
    RunRecord,
    RunSourceRecord,
    TaskInstanceRecord,
    TokenRecord,
    TriggerRecord,
    TryRecord,
    WebhookRecord,
)
from orchestrator.store.rows import (
    DAG_COLUMNS,
    IMPORT_ERROR_COLUMNS,
    RUN_COLUMNS,
    TASK_INSTANCE_COLUMNS,
    TRY_COLUMNS,
    dag_from_row,
    import_error_from_row,
    run_from_row,
    task_instance_from_row,
    try_from_row,
)
from orchestrator.store.statedir import prepare_state_dir
from orchestrator.store.waitrows import (
    EVENT_COLUMNS,
    RUN_SOURCE_COLUMNS,
    TRIGGER_COLUMNS,
    event_from_row,
    run_source_from_row,
    trigger_from_row,
)
from orchestrator.store.walmark import WalMarker, check_wal_not_lost, enter_reader
from orchestrator.store.writer import GroupCommitWriter

_TASK_KEY = "run_id = ? AND task_id = ? AND map_index = ?"


class SqliteStore(OverviewReads):
    """The durable state in `<state_dir>/orchestrator.db`. Get one from `open_store`."""

    def __init__(
        self,
        path: str,
        reader: aiosqlite.Connection,
        writer: GroupCommitWriter | None,
        ui_connection: UiConnection | None = None,
    ) -> None:
        self.path = path
        self._reader = reader
        self._writer = writer
        self._ui_connection = ui_connection

    async def ui_reads(self) -> SqliteStore:
        """The same reads on the web UI's own connection (see `overview.py`); commits refused.

        A read-only store has no engine to keep waiting: it reads on its one connection.
        """
        if self._ui_connection is None:
            return self
        return SqliteStore(self.path, await self._ui_connection.get(), None)

    async def commit(self, batch: WriteBatch) -> None:
        """Apply `batch` atomically and durably; raises `StoreError` and applies nothing."""
        if not batch:
            return
        if self._writer is None:
            raise StoreError(
                f"The store at {self.path} was opened read-only; the batch was not applied."
            )
        await self._writer.commit(batch)

    def statistics(self) -> StoreStatistics:
        """Write counters so far (all zero when opened read-only)."""
        if self._writer is None:
            return StoreStatistics(transactions=0, batches=0)
        return self._writer.statistics()

    async def list_dags(self) -> list[DagRecord]:
        rows = await self._fetch(f"SELECT {DAG_COLUMNS} FROM dags ORDER BY dag_id")
        return [dag_from_row(row) for row in rows]

    async def list_import_errors(self) -> list[ImportErrorRecord]:
        sql = f"SELECT {IMPORT_ERROR_COLUMNS} FROM import_errors ORDER BY fileloc, rowid"
        return [import_error_from_row(row) for row in await self._fetch(sql)]

    async def get_run(self, run_id: str) -> RunRecord | None:
        rows = await self._fetch(f"SELECT {RUN_COLUMNS} FROM runs WHERE run_id = ?", (run_id,))
        return run_from_row(rows[0]) if rows else None

    async def list_runs(
        self,
        *,
        dag_id: str | None = None,
        state: RunState | None = None,
        limit: int = 50,
        before: str | None = None,
    ) -> list[RunRecord]:
        """Newest first (by queued_at; runs queued at the same moment, last created first).

        `before` is a run id: only runs listed after it are returned (the next page). An
        unknown `before` returns nothing.
        """
        if limit < 0:
            raise ValueError(f"limit must be 0 or more, not {limit}")
        filters = {"dag_id": dag_id, "state": state.value if state else None}
        chosen = {column: value for column, value in filters.items() if value is not None}
        clauses = [f"{column} = ?" for column in chosen]
        params: list[Any] = list(chosen.values())
        if before is not None:
            clauses.append(
                "(queued_at, rowid) < (SELECT queued_at, rowid FROM runs WHERE run_id = ?)"
            )
            params.append(before)
        where = " AND ".join(clauses) or "1"
        sql = (
            f"SELECT {RUN_COLUMNS} FROM runs WHERE {where}"
            " ORDER BY queued_at DESC, rowid DESC LIMIT ?"
        )
        return [run_from_row(row) for row in await self._fetch(sql, (*params, limit))]

    async def list_task_instances(self, run_id: str) -> list[TaskInstanceRecord]:
        """In the order they were created (the order of the DAG's tasks, then expansions)."""
        sql = f"SELECT {TASK_INSTANCE_COLUMNS} FROM task_instances WHERE run_id = ? ORDER BY rowid"
        return [task_instance_from_row(row) for row in await self._fetch(sql, (run_id,))]

    async def list_tries(self, run_id: str, task_id: str, map_index: int = -1) -> list[TryRecord]:
        """Oldest first."""
        sql = f"SELECT {TRY_COLUMNS} FROM task_tries WHERE {_TASK_KEY} ORDER BY try_number"
        rows = await self._fetch(sql, (run_id, task_id, map_index))
        return [try_from_row(row) for row in rows]

    async def get_results(self, run_id: str) -> dict[tuple[str, int], str]:
        """Every recorded result of a run: (task_id, map_index) -> JSON text."""
        sql = "SELECT task_id, map_index, value FROM task_results WHERE run_id = ?"
        return {
            (task_id, index): value for task_id, index, value in await self._fetch(sql, (run_id,))
        }

    async def previous_run(self, dag_id: str, run_id: str) -> RunRecord | None:
        """The DAG's run just before this one by logical date (else queue time), any state.

        Runs without a logical date (manual, event) take their queue time; ties go by creation.
        """
        moment = "COALESCE(logical_date, queued_at), rowid"
        sql = (
            f"SELECT {RUN_COLUMNS} FROM runs WHERE dag_id = ? AND ({moment}) < (SELECT {moment}"
            " FROM runs WHERE run_id = ?) ORDER BY COALESCE(logical_date, queued_at) DESC,"
            " rowid DESC LIMIT 1"
        )
        rows = await self._fetch(sql, (dag_id, run_id))
        return run_from_row(rows[0]) if rows else None

    async def list_unfinished_runs(self) -> list[RunRecord]:
        """Runs queued or running (to be picked up again after a restart), oldest first."""
        sql = (
            f"SELECT {RUN_COLUMNS} FROM runs WHERE state IN ('queued', 'running')"
            " ORDER BY queued_at, rowid"
        )
        return [run_from_row(row) for row in await self._fetch(sql)]

    async def list_triggers(self) -> list[TriggerRecord]:
        """Every stored trigger, oldest first."""
        sql = f"SELECT {TRIGGER_COLUMNS} FROM triggers ORDER BY trigger_id"
        return [trigger_from_row(row) for row in await self._fetch(sql)]

    async def get_dag(self, dag_id: str) -> DagRecord | None:
        rows = await self._fetch(f"SELECT {DAG_COLUMNS} FROM dags WHERE dag_id = ?", (dag_id,))
        return dag_from_row(rows[0]) if rows else None

    async def list_events(
        self,
        *,
        dag_id: str | None = None,
        run_id: str | None = None,
        limit: int = 50,
        before: int | None = None,
    ) -> list[EventRecord]:
        """Newest first; `before` is an event id: only older events (the next page)."""
        filters = {"dag_id": dag_id, "run_id": run_id}
        chosen = {column: value for column, value in filters.items() if value is not None}
        clauses = [f"{column} = ?" for column in chosen]
        params: list[Any] = list(chosen.values())
        if before is not None:
            clauses.append("event_id < ?")
            params.append(before)
        where = " AND ".join(clauses) or "1"
        sql = f"SELECT {EVENT_COLUMNS} FROM events WHERE {where} ORDER BY event_id DESC LIMIT ?"
        return [event_from_row(row) for row in await self._fetch(sql, (*params, limit))]

    async def list_pending_events(self) -> list[EventRecord]:
        """Events that wait for their batch window or debounce (no run yet), oldest first."""
        sql = f"SELECT {EVENT_COLUMNS} FROM events WHERE run_id IS NULL ORDER BY event_id"
        return [event_from_row(row) for row in await self._fetch(sql)]

    async def known_event_keys(self, dag_id: str, dedup_keys: list[str]) -> set[str]:
        """Which of these dedup keys the DAG has already recorded an event for."""
        return await self._known_keys("events", dag_id, dedup_keys)

    async def known_run_keys(self, dag_id: str, dedup_keys: list[str]) -> set[str]:
        """Which of these dedup keys the DAG already has a run for."""
        return await self._known_keys("runs", dag_id, dedup_keys)

    async def _known_keys(self, table: str, dag_id: str, dedup_keys: list[str]) -> set[str]:
        known: set[str] = set()
        for start in range(0, len(dedup_keys), 500):  # under SQLite's limit of bound variables
            chunk = dedup_keys[start : start + 500]
            marks = ", ".join("?" for _ in chunk)
            sql = f"SELECT dedup_key FROM {table} WHERE dag_id = ? AND dedup_key IN ({marks})"
            known.update(row[0] for row in await self._fetch(sql, (dag_id, *chunk)))
        return known

    async def latest_logical_dates(self, run_type: str) -> dict[str, float]:
        """Per DAG, the latest logical date of its runs of this type."""
        sql = (
            "SELECT dag_id, MAX(logical_date) FROM runs"
            " WHERE run_type = ? AND logical_date IS NOT NULL GROUP BY dag_id"
        )
        return dict(await self._fetch(sql, (run_type,)))

    async def list_run_sources(self) -> list[RunSourceRecord]:
        sql = f"SELECT {RUN_SOURCE_COLUMNS} FROM run_sources ORDER BY dag_id, source"
        return [run_source_from_row(row) for row in await self._fetch(sql)]

    async def list_tokens(self) -> list[TokenRecord]:
        """Every API token, revoked and expired ones too, oldest first."""
        sql = f"SELECT {TOKEN_COLUMNS} FROM api_tokens ORDER BY created_at, token_id"
        return [token_from_row(row) for row in await self._fetch(sql)]

    async def list_webhooks(self) -> list[WebhookRecord]:
        """Every webhook definition, by name."""
        sql = f"SELECT {WEBHOOK_COLUMNS} FROM webhooks ORDER BY name"
        return [webhook_from_row(row) for row in await self._fetch(sql)]

    async def list_alerts(self, limit: int = 50) -> list[AlertRecord]:
        """The latest alerts with their delivery state, newest first."""
        sql = f"SELECT {ALERT_COLUMNS} FROM alerts ORDER BY created_at DESC, rowid DESC LIMIT ?"
        return [alert_from_row(row) for row in await self._fetch(sql, (limit,))]

    async def list_pending_alerts(
        self, channel: str | None = None, limit: int = 100
    ) -> list[AlertRecord]:
        """Alerts not yet sent (of one channel, or all), oldest first."""
        where = "state = 'pending'" + (" AND channel = ?" if channel is not None else "")
        params = (channel, limit) if channel is not None else (limit,)
        sql = f"SELECT {ALERT_COLUMNS} FROM alerts WHERE {where} ORDER BY created_at, rowid LIMIT ?"
        return [alert_from_row(row) for row in await self._fetch(sql, params)]

    async def integrity_check(self) -> list[str]:
        """Problems found by a full check of the file and its foreign keys; empty when sound.

        A file with such problems is not to be written to. Values that cannot be read in
        sound rows are `damaged_rows`' business: the rest of the file is still good to use.
        """
        problems = [str(row[0]) for row in await self._fetch("PRAGMA integrity_check")]
        problems = [problem for problem in problems if problem != "ok"]
        for table, rowid, parent, _ in await self._fetch("PRAGMA foreign_key_check"):
            problems.append(f"{table} row {rowid} refers to a missing row of {parent}")
        return problems

    async def damaged_rows(self) -> list[str]:
        """Every row with a JSON value that cannot be read: its table, key, column and why."""
        return await find_damaged_rows(self._fetch)

    async def _fetch(self, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
        try:
            return list(await self._reader.execute_fetchall(sql, params))
        except ValueError as error:  # aiosqlite's word for "connection closed"
            raise StoreError(f"The store at {self.path} is closed; open it again.") from error


if TYPE_CHECKING:
    _conforms: type[Store] = SqliteStore  # mypy checks SqliteStore against the protocol


@asynccontextmanager
async def open_store(
    state_dir: str | Path, *, synchronous: str = "FULL", readonly: bool = False
) -> AsyncIterator[SqliteStore]:
    """Open the store in `state_dir`, migrating its schema; close it cleanly on exit.

    For writing, `state_dir` is created if needed and the writer runs until the block ends;
    leaving it commits what is already queued first. `readonly` creates no directory and
    no database, refuses commits, and fails if there is no database yet or its schema is not
    current. (Like any reader of a WAL database, SQLite itself may add its `-wal` and `-shm`
    companion files beside an existing database; they hold no data until a writer comes.
    Where it may not, as on a read-only mount, see `walmark.enter_reader`.)
    """
    level = check_synchronous(synchronous)
    prepare = functools.partial(prepare_state_dir, Path(state_dir), readonly=readonly)
    db_path = await anyio.to_thread.run_sync(prepare)
    await anyio.to_thread.run_sync(check_wal_not_lost, db_path)
    opener = _open_readonly if readonly else _open_writable
    async with opener(db_path, level) as store:
        yield store


@asynccontextmanager
async def _open_writable(db_path: Path, synchronous: str) -> AsyncIterator[SqliteStore]:
    marker = WalMarker(db_path)
    try:
        async with _writable(db_path, synchronous, marker) as store:
            yield store
    finally:
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(marker.after_close)


@asynccontextmanager
async def _writable(
    db_path: Path, synchronous: str, marker: WalMarker
) -> AsyncIterator[SqliteStore]:
    async with connect_writer(db_path, synchronous) as connection:
        await migrate(connection, str(db_path))
        await connection.execute("PRAGMA wal_autocheckpoint = 0")  # see checkpoints.py
        await connection.execute(f"PRAGMA journal_size_limit = {WAL_SIZE_LIMIT}")
        async with (
            connect_reader(db_path, synchronous, check=False) as reader,
            UiConnection(db_path, synchronous) as ui_connection,
            connect_checkpointer(db_path, synchronous) as checkpointer,
        ):
            checkpoints = BackgroundCheckpoints(checkpointer)
            writer = GroupCommitWriter(connection, str(db_path), marker, checkpoints)
            body_error: BaseException | None = None
            async with anyio.create_task_group() as task_group:
                task_group.start_soon(writer.run)
                task_group.start_soon(checkpoints.run)
                try:
                    yield SqliteStore(str(db_path), reader, writer, ui_connection)
                except BaseException as error:
                    body_error = error
                finally:
                    writer.close()
                    checkpoints.stop()
            with anyio.CancelScope(shield=True):
                await writer.checkpoint()  # a clean stop leaves nothing in the -wal file
            if body_error is not None:
                # Raised here, outside the task group, so a `StoreError` from the caller's block
                # reaches the caller as itself rather than wrapped in an ExceptionGroup.
                raise body_error


@asynccontextmanager
async def _open_readonly(db_path: Path, synchronous: str) -> AsyncIterator[SqliteStore]:
    async with AsyncExitStack() as stack:
        reader = await enter_reader(stack, db_path, synchronous)
        check_version(await read_version(reader), str(db_path), readonly=True)
        yield SqliteStore(str(db_path), reader, None)
