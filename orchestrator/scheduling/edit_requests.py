"""Edits asked of a running engine: cancel a run, clear task instances (rules in `run_edits`).

A run the engine drives is edited inside one of its steps, so the edit commits in the same
transaction as the scheduling decisions it changes and never races a try that finishes at the
same moment: the caller posts a request and is answered once that step has committed. A run
the engine does not drive is edited in the store directly, one edit at a time.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import anyio

from orchestrator.changes import Change
from orchestrator.clock import Clock
from orchestrator.errors import RunError
from orchestrator.loading.dagbag import DagBag
from orchestrator.scheduling.active_runs import ActiveRun, Transitions
from orchestrator.scheduling.autostart import RunStarter
from orchestrator.scheduling.driven_runs import DrivenRuns
from orchestrator.scheduling.messages import CancelRequest, ClearRequest, Message
from orchestrator.scheduling.run_edits import (
    cancel_stored_run,
    clear_instances,
    clear_stored_run,
    clear_targets,
    dag_of_run,
    load_run,
    stored_run,
)
from orchestrator.scheduling.scheduler import Scheduler
from orchestrator.state import RunState
from orchestrator.store import Store
from orchestrator.store.base import TaskKey
from orchestrator.store.records import RunRecord


class EditRequests:
    """Cancels and clears for the engine: posted to its steps, or applied to the store."""

    def __init__(
        self,
        *,
        store: Store,
        dagbag: DagBag,
        clock: Clock,
        scheduler: Scheduler,
        starter: RunStarter,
        driven: DrivenRuns,
        post: Callable[[Message], None],
        publish: Callable[[list[Change]], None],
    ) -> None:
        self._store = store
        self._dagbag = dagbag
        self._clock = clock
        self._scheduler = scheduler
        self._starter = starter
        self._driven = driven
        self._post = post
        self._publish = publish
        self._editing = anyio.Lock()  # clears (and store-only cancels) one at a time
        self._answered: list[ClearRequest] = []  # applied in this step: answered after commit

    async def cancel(self, run_id: str) -> bool:
        """Cancel a run; False if it had already finished. Raises `RunNotFoundError`."""
        if run_id in self._scheduler.runs:
            self._post(CancelRequest(run_id))
            return True
        async with self._editing:
            record = await stored_run(self._store, run_id)
            if record.state.finished:
                return False
            self._publish(await cancel_stored_run(self._store, record, now=self._clock.now()))
            return True

    async def clear(self, run_id: str, task_ids: Sequence[str], downstream: bool) -> list[TaskKey]:
        """Clear task instances so that they run again; their keys, once committed."""
        async with self._editing:  # a finished run is read, then queued again: one at a time
            while True:
                stored = None
                if run_id not in self._scheduler.runs:
                    record = await stored_run(self._store, run_id)
                    if not record.state.finished:
                        return await self._clear_undriven(record, task_ids, downstream)
                    stored = (record, await self._load_run(record))
                request = ClearRequest(run_id, tuple(task_ids), downstream, stored)
                self._post(request)
                await request.done.wait()
                if not request.missed:
                    break
        if request.error is not None:
            raise request.error
        return request.cleared

    def apply(self, request: ClearRequest, tx: Transitions) -> None:
        """Apply a clear in this step's transaction; `request` is answered after the commit."""
        self._answered.append(request)
        run = self._scheduler.runs.get(request.run_id)
        stored = None
        if run is None:
            if request.stored is None:
                request.missed = True  # it finished since `clear` looked: read it again
                return
            stored = request.stored
            run = stored[1]
        try:
            clearing = clear_targets(run, request.task_ids, downstream=request.downstream)
        except RunError as error:
            request.error = error
            return
        request.cleared = clear_instances(run, clearing, tx)
        if stored is not None and run.state is RunState.QUEUED:
            self._adopt_cleared(stored[0], run)

    def answer(self) -> None:
        """The step committed (or refused) its clears: wake whoever asked for them."""
        for request in self._answered:
            request.done.set()
        self._answered = []

    async def _load_run(self, record: RunRecord) -> ActiveRun:
        dag = dag_of_run(self._dagbag, record)
        return await load_run(self._store, record, dag, self._driven.plan(dag))

    async def _clear_undriven(
        self, record: RunRecord, task_ids: Sequence[str], downstream: bool
    ) -> list[TaskKey]:
        """An unfinished run nobody here drives: cleared in the store, for whoever drives it."""
        keys, changes = await clear_stored_run(
            self._store,
            self._dagbag,
            record,
            task_ids,
            downstream=downstream,
            now=self._clock.now(),
        )
        self._publish(changes)
        return keys

    def _adopt_cleared(self, record: RunRecord, run: ActiveRun) -> None:
        """Drive a finished run a clear queued again, as if it had just been triggered."""
        self._driven.adopt(run)
        self._starter.note_unfinished(record)  # a scheduled run holds its DAG's place again
