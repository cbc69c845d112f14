"""The store interface: what the engine needs from durable state, independent of SQLite.

Writes are collected in a `WriteBatch` and committed with `Store.commit(batch)`: one batch is
one atomic transaction. The SQLite store commits the batches that arrive together in one
`BEGIN IMMEDIATE` transaction (group commit), each in its own savepoint, and answers each
caller only after the commit is durable.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from orchestrator.state import RunState, TaskState, check_run_transition
from orchestrator.store.alertrows import AlertRecord
from orchestrator.store.folding import InsertFolding, check_move, move_args, previous_move
from orchestrator.store.records import (
    DagGrid,
    DagRecord,
    DagTaskInstance,
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

TaskKey = tuple[str, str, int]  # (run_id, task_id, map_index)
_DEFERRED = TaskState.DEFERRED  # read once: off the enum it is a slow lookup each time


@dataclass(frozen=True)
class Op:
    """One write: a kind and its arguments. Batches are lists of these."""

    kind: str
    args: dict[str, Any]


@dataclass
class WriteBatch:
    """Writes that commit together or not at all.

    State changes name the state they expect to find (`old`): the store applies them with
    `WHERE state = old` and fails the batch if the row was elsewhere, so a task instance can
    never record two successes, whatever the engine does.
    """

    ops: list[Op] = field(default_factory=list)
    _folding: InsertFolding = field(default_factory=InsertFolding, repr=False, compare=False)

    def __bool__(self) -> bool:
        return bool(self.ops)

    def upsert_dag(self, dag: DagRecord) -> None:
        self.ops.append(Op("upsert_dag", {"dag": dag}))

    def replace_import_errors(self, errors: list[ImportErrorRecord]) -> None:
        """Forget every recorded import error and record these instead."""
        self.ops.append(Op("replace_import_errors", {"errors": errors}))

    def create_run(self, run: RunRecord, task_instances: list[TaskInstanceRecord]) -> None:
        self.ops.append(Op("create_run", {"run": run, "task_instances": task_instances}))

    def set_run_state(self, run_id: str, old: RunState, new: RunState, *, at: float) -> None:
        """Move a run; `at` becomes started_at (for running) or ended_at (when finished).

        Back to queued (a clear: it runs again), its ended_at is forgotten instead.
        """
        check_run_transition(old, new)
        kind = "requeue_run" if new is RunState.QUEUED else "set_run_state"
        self.ops.append(Op(kind, {"run_id": run_id, "old": old, "new": new, "at": at}))

    def add_task_instances(self, task_instances: list[TaskInstanceRecord]) -> None:
        """New rows for an existing run; their moves in this batch fold into the insert."""
        moved = self._folding.inserted(task_instances)
        self.ops.append(
            Op("add_task_instances", {"task_instances": task_instances, "moved": moved})
        )

    def set_task_state(self, key: TaskKey, old: TaskState, new: TaskState, **fields: Any) -> None:
        """Move a task instance; `fields` sets columns of TaskInstanceRecord on the same row.

        Allowed fields: try_number, max_tries, queued_at, started_at, ended_at, next_retry_at,
        error, next_call, interrupted_tries.
        """
        check_move(old, new, fields)
        if not self._folding.fold(key, old, new, fields):
            move = move_args(key, old, new, fields)
            self.ops.append(Op("set_task_state", previous_move(self.ops, move)))

    def open_deferral(
        self,
        key: TaskKey,
        old: TaskState,
        attempt: TryRecord,
        trigger: TriggerRecord,
        **fields: Any,
    ) -> None:
        """A sensor's first try opens straight into `deferred`, with its try and trigger rows.

        Consecutive ones share one op, written as bulk statements (`writes._open_deferrals`),
        not one per row and kind. The move is guarded by `old` just as `set_task_state`'s is.
        """
        check_move(old, _DEFERRED, fields)
        move = None
        if not self._folding.fold(key, old, _DEFERRED, fields):
            move = previous_move(self.ops, move_args(key, old, _DEFERRED, fields))
        last = self.ops[-1] if self.ops else None
        if last is None or last.kind != "open_deferrals":
            last = Op("open_deferrals", {"moves": [], "tries": [], "triggers": []})
            self.ops.append(last)
        if move is not None:
            last.args["moves"].append(move)
        last.args["tries"].append(attempt)
        last.args["triggers"].append(trigger)

    def note_waiting(self, key: TaskKey, reason: str | None) -> None:
        """Say why a task instance in `none` does not start yet (None: it no longer waits)."""
        self._folding.close(key)
        self.ops.append(Op("note_waiting", {"key": key, "reason": reason}))

    def start_try(self, attempt: TryRecord) -> None:
        self.ops.append(Op("start_try", {"attempt": attempt}))

    def end_try(
        self, key: TaskKey, try_number: int, state: TaskState, *, at: float, error: str | None
    ) -> None:
        self.ops.append(
            Op(
                "end_try",
                {"key": key, "try_number": try_number, "state": state, "at": at, "error": error},
            )
        )

    def set_next_call(self, key: TaskKey, next_call_json: str | None) -> None:
        """Record how a deferred task instance goes on, without moving it."""
        self._folding.close(key)
        self.ops.append(Op("set_next_call", {"key": key, "next_call": next_call_json}))

    def reopen_try(self, key: TaskKey, try_number: int, *, at: float) -> None:
        """A deferred try resumes on a slot: the same try runs again (its log goes on)."""
        self.ops.append(Op("reopen_try", {"key": key, "try_number": try_number, "at": at}))

    def add_trigger(self, trigger: TriggerRecord) -> None:
        """Store the trigger a task instance defers on (at most one per task instance)."""
        self.ops.append(Op("add_trigger", {"trigger": trigger}))

    def delete_trigger(self, key: TaskKey) -> None:
        """Forget a task instance's trigger: it fired, timed out, failed or was cancelled."""
        self.ops.append(Op("delete_trigger", {"key": key}))

    def save_trigger_cursor(self, key: TaskKey, cursor: Any) -> None:
        """Remember where a trigger got to (JSON), so after a restart it goes on from there."""
        self.ops.append(Op("save_trigger_cursor", {"key": key, "cursor": cursor}))

    def set_dag_paused(self, dag_id: str, paused: bool) -> None:
        """Pause (no new runs start) or unpause a DAG; fails the batch if there is no such DAG."""
        self.ops.append(Op("set_dag_paused", {"dag_id": dag_id, "paused": paused}))

    def add_events(self, events: list[EventRecord]) -> None:
        """Record events; one already recorded (same DAG and dedup key) fails the batch."""
        self.ops.append(Op("add_events", {"events": events}))

    def assign_events(self, dag_id: str, dedup_keys: list[str], run_id: str) -> None:
        """Mark waiting events (batch window, debounce) as started by `run_id`."""
        self.ops.append(
            Op("assign_events", {"dag_id": dag_id, "dedup_keys": dedup_keys, "run_id": run_id})
        )

    def put_run_source(self, source: RunSourceRecord) -> None:
        """Record a DAG's run trigger as hosted now; keeps the saved cursor of the same trigger."""
        self.ops.append(Op("put_run_source", {"source": source}))

    def delete_run_sources(self, dag_id: str, keep: list[str]) -> None:
        """Forget a DAG's run triggers other than `keep` (it no longer declares them)."""
        self.ops.append(Op("delete_run_sources", {"dag_id": dag_id, "keep": keep}))

    def save_source_cursor(self, dag_id: str, source: str, cursor: Any) -> None:
        """Remember where a run trigger got to (JSON), so a restart goes on from there."""
        self.ops.append(
            Op("save_source_cursor", {"dag_id": dag_id, "source": source, "cursor": cursor})
        )

    def set_source_error(self, dag_id: str, source: str, error: str | None) -> None:
        """Say why a run trigger is not watching (None: it is watching again)."""
        self.ops.append(
            Op("set_source_error", {"dag_id": dag_id, "source": source, "error": error})
        )

    def save_result(self, key: TaskKey, value_json: str) -> None:
        """Record a task instance's result, already encoded as JSON text (size-checked)."""
        self.ops.append(Op("save_result", {"key": key, "value_json": value_json}))

    def delete_results(self, keys: list[TaskKey]) -> None:
        """Forget these task instances' results (cleared: downstream must not read stale ones)."""
        self.ops.append(Op("delete_results", {"keys": keys}))

    def delete_task_instances(self, keys: list[TaskKey]) -> None:
        """Remove task instances with their tries, results and triggers.

        Only for the rows of an expanded task that a clear made obsolete: the placeholder of a
        task that never expanded, or elements its new list no longer has.
        """
        for key in keys:
            self._folding.close(key)
        self.ops.append(Op("delete_task_instances", {"keys": keys}))

    def put_token(self, token: TokenRecord) -> None:
        """Record a new API token (its secret's hash only); an existing id fails the batch."""
        self.ops.append(Op("put_token", {"token": token}))

    def revoke_token(self, token_id: str, at: float) -> None:
        """Refuse a token from `at` on; an unknown id fails the batch, a second revoke keeps it."""
        self.ops.append(Op("revoke_token", {"token_id": token_id, "at": at}))

    def put_webhook(self, webhook: WebhookRecord, *, replace: bool = False) -> None:
        """Record a webhook definition; an existing name fails the batch unless `replace`."""
        self.ops.append(Op("put_webhook", {"webhook": webhook, "replace": replace}))

    def delete_webhook(self, name: str) -> None:
        """Forget a webhook definition; an unknown name fails the batch."""
        self.ops.append(Op("delete_webhook", {"name": name}))

    def add_alerts(self, alerts: list[AlertRecord]) -> None:
        """Put alerts in the outbox, with the state change that caused them."""
        self.ops.append(Op("add_alerts", {"alerts": alerts}))

    def mark_alerts_sent(self, alert_ids: list[str], at: float) -> None:
        """Their channel took these alerts (an id already sent stays as it was)."""
        self.ops.append(Op("mark_alerts_sent", {"alert_ids": alert_ids, "at": at}))

    def note_alert_failures(self, alert_ids: list[str], error: str) -> None:
        """An attempt to send these alerts failed with `error`; they stay pending."""
        self.ops.append(Op("note_alert_failures", {"alert_ids": alert_ids, "error": error}))


@dataclass(frozen=True)
class StoreStatistics:
    """A snapshot of a store's write counters, for tests and benchmarks.

    `transactions` below `batches` shows group commit at work: several callers' batches
    shared one transaction (and one fsync).
    """

    transactions: int  # write transactions committed
    batches: int  # write batches committed (failed ones are not counted)
    checkpoints: int = 0  # complete checkpoints of the WAL into the main file
    transaction_seconds: float = 0.0  # time spent in write transactions, BEGIN to COMMIT


class Store(Protocol):
    """Durable state. SQLite today; PostgreSQL can implement the same for several hosts."""

    path: str

    async def commit(self, batch: WriteBatch) -> None:
        """Apply `batch` atomically and durably; raises `StoreError` and applies nothing."""
        ...

    def statistics(self) -> StoreStatistics:
        """A snapshot of the write counters."""
        ...

    async def list_dags(self) -> list[DagRecord]: ...

    async def list_import_errors(self) -> list[ImportErrorRecord]: ...

    async def get_run(self, run_id: str) -> RunRecord | None: ...

    async def list_runs(
        self,
        *,
        dag_id: str | None = None,
        state: RunState | None = None,
        limit: int = 50,
        before: str | None = None,
    ) -> list[RunRecord]:
        """Newest first; `before` (a run id) starts the page after that run."""
        ...

    async def list_task_instances(self, run_id: str) -> list[TaskInstanceRecord]: ...

    async def list_tries(self, run_id: str, task_id: str, map_index: int = -1) -> list[TryRecord]:
        """Oldest first."""
        ...

    async def get_results(self, run_id: str) -> dict[tuple[str, int], str]:
        """Every recorded result of a run: (task_id, map_index) -> JSON text."""
        ...

    async def previous_run(self, dag_id: str, run_id: str) -> RunRecord | None:
        """The DAG's run just before this one by logical date (else queue time), any state."""
        ...

    async def list_unfinished_runs(self) -> list[RunRecord]:
        """Runs queued or running (to be picked up again after a restart), oldest first."""
        ...

    async def list_triggers(self) -> list[TriggerRecord]:
        """Every stored trigger, oldest first."""
        ...

    async def get_dag(self, dag_id: str) -> DagRecord | None: ...

    async def list_events(
        self,
        *,
        dag_id: str | None = None,
        run_id: str | None = None,
        limit: int = 50,
        before: int | None = None,
    ) -> list[EventRecord]:
        """Newest first; `before` (an event id) starts the page after that event."""
        ...

    async def list_pending_events(self) -> list[EventRecord]:
        """Events that wait for their batch window or debounce (no run yet), oldest first."""
        ...

    async def known_event_keys(self, dag_id: str, dedup_keys: list[str]) -> set[str]:
        """Which of these dedup keys the DAG has already recorded an event for."""
        ...

    async def known_run_keys(self, dag_id: str, dedup_keys: list[str]) -> set[str]:
        """Which of these dedup keys the DAG already has a run for."""
        ...

    async def latest_logical_dates(self, run_type: str) -> dict[str, float]:
        """Per DAG, the latest logical date of its runs of this type."""
        ...

    async def list_run_sources(self) -> list[RunSourceRecord]: ...

    async def list_tokens(self) -> list[TokenRecord]:
        """Every API token, revoked and expired ones too, oldest first."""
        ...

    async def list_webhooks(self) -> list[WebhookRecord]:
        """Every webhook definition, by name."""
        ...

    async def list_alerts(self, limit: int = 50) -> list[AlertRecord]:
        """The latest alerts with their delivery state, newest first."""
        ...

    async def list_pending_alerts(
        self, channel: str | None = None, limit: int = 100
    ) -> list[AlertRecord]:
        """Alerts not yet sent (of one channel, or all), oldest first."""
        ...

    async def integrity_check(self) -> list[str]:
        """Problems found by a full check; empty when the database is sound."""
        ...

    async def damaged_rows(self) -> list[str]:
        """Rows whose JSON values cannot be read, each named; empty when none."""
        ...

    # The web UI's reads (see `overview.py`).

    async def ui_reads(self) -> Store:
        """These reads on a connection of the UI's own, so pages never delay the engine."""
        ...

    async def run_counts_since(self, since: float) -> dict[RunState, int]:
        """Runs queued at `since` or later, counted by state (every state named)."""
        ...

    async def recent_runs_by_dag(self, per_dag: int) -> dict[str, list[RunRecord]]:
        """Each known DAG's last `per_dag` runs, newest first."""
        ...

    async def grid(self, dag_id: str, limit: int, before: str | None = None) -> DagGrid:
        """A DAG's last `limit` runs (keyset `before`, as `list_runs`) and their instances."""
        ...

    async def list_task_instances_by_state(
        self, state: TaskState, limit: int = 50, before: TaskKey | None = None
    ) -> list[DagTaskInstance]:
        """Task instances in `state` that ended, last ended first; `before` pages on."""
        ...

    async def list_run_tries(self, run_id: str) -> list[TryRecord]:
        """Every try of a run, by task id, map index and try number."""
        ...

    async def event_counts_by_source(self) -> dict[tuple[str, str], tuple[int, float]]:
        """Per (DAG, run trigger): events recorded, and when the last one was received."""
        ...

    def store_size(self) -> int:
        """Bytes on disk: the database and its write-ahead log."""
        ...
