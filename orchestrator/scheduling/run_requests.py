"""Runs asked for: a trigger (CLI, API, webhook), a backfill, or a run trigger's new run.

Each is committed before it is driven, so a run that was answered for (a 201 to a webhook,
a run id printed) survives any crash after it. A DAG's queue of runs waiting to start is
bounded (`max_queued_runs`): a flood of triggers is refused with a retry hint, not queued
without end.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from orchestrator.authoring.context import RunRequest, new_run_id
from orchestrator.authoring.dag import DAG
from orchestrator.clock import Clock
from orchestrator.config import Settings
from orchestrator.errors import DagPausedError, OrchestratorError, RunError, RunLimitError
from orchestrator.loading.dagbag import DagBag
from orchestrator.scheduling.active_runs import ActiveRun
from orchestrator.scheduling.driven_runs import DrivenRuns
from orchestrator.scheduling.schedule_ticks import backfill, interval_key
from orchestrator.scheduling.scheduler import Scheduler
from orchestrator.state import RunState
from orchestrator.store import Store
from orchestrator.store.base import WriteBatch
from orchestrator.store.records import EventRecord, RunRecord

# `json.dumps(..., allow_nan=False)` makes a new encoder per call; this one is made once.
_STRICT_JSON = json.JSONEncoder(allow_nan=False)
# A module constant: reading a member off its enum class takes a slow path (0.1 us) in 3.11.
_QUEUED = RunState.QUEUED


class RunRequests:
    """Creates queued runs, commits them, and hands them to the scheduler."""

    def __init__(
        self,
        *,
        settings: Settings,
        dagbag: DagBag,
        store: Store,
        clock: Clock,
        scheduler: Scheduler,
        driven: DrivenRuns,
        is_paused: Callable[[str], bool],
        wake: Callable[[], None],
    ) -> None:
        self._settings = settings
        self._dagbag = dagbag
        self._store = store
        self._clock = clock
        self._scheduler = scheduler
        self._driven = driven
        self._is_paused = is_paused
        self._wake = wake
        self._committing: dict[str, int] = {}  # runs on their way to the store, per DAG

    async def trigger(
        self,
        dag_id: str,
        conf: Mapping[str, Any] | None,
        *,
        event: EventRecord | None = None,
        ignore_depends_on_past: bool = False,
        **fields: Any,
    ) -> str:
        """Create and commit a run of `dag_id` (with `event`, in the same transaction)."""
        dag, conf = self._checked(dag_id, conf)
        batch = WriteBatch()
        record = self._run_record(dag, conf, **fields)
        batch.create_run(record, [])
        if event is not None:
            batch.add_events([replace(event, dag_id=dag_id, run_id=record.run_id)])
        self._committing[dag_id] = self._committing.get(dag_id, 0) + 1
        try:
            await self._store.commit(batch)
        finally:
            self._committing[dag_id] -= 1
        if ignore_depends_on_past:  # before the scheduler sees the run: none of it may wait
            self._scheduler.past.ignore(record.run_id)
        self._adopt(record, dag)
        self._wake()
        return record.run_id

    async def backfill(self, dag_id: str, start: float, end: float) -> tuple[list[str], int]:
        """Queue a run per interval of the schedule from `start` to `end` that has none yet."""
        dag = self._dagbag.get(dag_id)
        intervals = backfill(dag, start, end)
        keys = [interval_key(interval) for interval in intervals]
        known = await self._store.known_run_keys(dag_id, keys)
        records = [
            self._run_record(
                dag,
                {},
                run_type="backfill",
                dedup_key=key,
                logical_date=interval.start,
                data_interval_end=interval.end,
            )
            for interval, key in zip(intervals, keys, strict=True)
            if key not in known
        ]
        batch = WriteBatch()
        for record in records:
            batch.create_run(record, [])
        await self._store.commit(batch)
        for record in records:
            self._adopt(record, dag)
        self._wake()
        return [record.run_id for record in records], len(known)

    def new_run(self, dag: DAG, conf: dict[str, Any], batch: WriteBatch, **fields: Any) -> str:
        """A queued run created in `batch` (a step's), handed to the scheduler at once."""
        record = self._run_record(dag, conf, **fields)
        batch.create_run(record, [])
        self._adopt(record, dag)
        return record.run_id

    def from_task(self, request: RunRequest, batch: WriteBatch) -> str | None:
        """Create the run a task asked for (`trigger_run`) in `batch`; or say why not."""
        try:
            dag, conf = self._checked(request.dag_id, request.conf)
        except OrchestratorError as error:
            return f"cannot start a run of {request.dag_id!r}: {error}"
        self.new_run(dag, conf, batch, run_type="manual", run_id=request.run_id)
        return None

    def _checked(self, dag_id: str, conf: Mapping[str, Any] | None) -> tuple[DAG, dict[str, Any]]:
        """The DAG and the conf of a run that may start now; raises if it may not."""
        dag = self._dagbag.get(dag_id)
        if self._is_paused(dag_id):
            raise DagPausedError(
                f"DAG {dag_id!r} is paused, so no run of it starts; unpause it first "
                f"(`orchestrator dags unpause {dag_id}`)",
                dag_id=dag_id,
            )
        checked = _checked_conf(conf)
        try:
            dag.check_conf(checked)
        except ValueError as error:
            raise RunError(f"DAG {dag_id!r} refuses this conf: {error}") from None
        self._check_queue_room(dag_id)
        return dag, checked

    def _check_queue_room(self, dag_id: str) -> None:
        """Refuse a trigger when the DAG's queue is full: a flood must not grow it without end."""
        waiting = self._scheduler.queued_runs(dag_id) + self._committing.get(dag_id, 0)
        limit = self._settings.max_queued_runs
        if waiting >= limit:
            raise RunLimitError(
                f"DAG {dag_id!r} has {waiting} runs waiting to start, the most "
                f"`max_queued_runs` allows ({limit}); try again when some have started",
                retry_after=1.0,
            )

    def _run_record(self, dag: DAG, conf: dict[str, Any], **fields: Any) -> RunRecord:
        now = self._clock.now()
        return RunRecord(
            run_id=fields.pop("run_id", None) or new_run_id(now),
            dag_id=dag.dag_id,
            state=_QUEUED,
            conf=conf,
            queued_at=now,
            **fields,
        )

    def _adopt(self, record: RunRecord, dag: DAG) -> None:
        self._driven.adopt(ActiveRun(record, dag, self._driven.plan(dag)))


def _checked_conf(conf: Mapping[str, Any] | None) -> dict[str, Any]:
    if conf is None:
        return {}
    if not isinstance(conf, Mapping):
        raise RunError(f"a run's conf must be a JSON object, got {type(conf).__name__}")
    try:
        return dict(json.loads(_STRICT_JSON.encode(dict(conf))))
    except (TypeError, ValueError) as error:
        raise RunError(f"a run's conf must be JSON-serialisable: {error}") from None
