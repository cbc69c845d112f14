"""The engine: store, scheduler, executor and timers in one event loop, woken by events.

```python
async with Engine.open(settings) as engine:
    run_id = await engine.trigger("retrain", conf={"path": "data/x.csv"})
    record = await engine.wait(run_id)
```

Nothing here polls. The loop sleeps on `_wake` and is woken by what can change a decision: a
run requested or cancelled, a try finished, a retry backoff come due. Each wake-up is one story,
told by `_step`: receive every message that arrived since the last one, take one scheduling
step, commit one store transaction, then dispatch — so a burst of a hundred finished tasks
costs one commit, not a hundred. The parts live beside this file: `messages` (what arrives),
`run_requests` and `edit_requests` (what users ask for), `timers`, `dispatch` (tries and
callbacks) and `startup` (recording DAGs, recovering runs).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any

import anyio
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectReceiveStream

from orchestrator.changes import Change
from orchestrator.clock import Clock
from orchestrator.config import Settings
from orchestrator.crashpoints import crashpoint
from orchestrator.errors import RunError
from orchestrator.execution.interface import TaskExecutor
from orchestrator.loading.dagbag import DagBag, FileChange, replace_file
from orchestrator.loading.importer import FileResult
from orchestrator.policy import InputPolicy
from orchestrator.scheduling import startup
from orchestrator.scheduling.active_runs import Transitions
from orchestrator.scheduling.autostart import RunStarter
from orchestrator.scheduling.change_feed import ChangeFeed
from orchestrator.scheduling.decisions import Decider
from orchestrator.scheduling.deferred import Timer
from orchestrator.scheduling.dispatch import Dispatcher
from orchestrator.scheduling.driven_runs import DrivenRuns
from orchestrator.scheduling.edit_requests import EditRequests
from orchestrator.scheduling.full_disk import FullDiskWait
from orchestrator.scheduling.messages import (
    Message,
    TriggerEnded,
    crash_after_commit,
    crash_before_commit,
    timer_message,
)
from orchestrator.scheduling.outbox import AlertOutbox
from orchestrator.scheduling.run_requests import RunRequests
from orchestrator.scheduling.scheduler import Scheduler
from orchestrator.scheduling.timers import TimerQueue
from orchestrator.store import Store
from orchestrator.store.base import TaskKey, WriteBatch
from orchestrator.store.records import EventRecord, RunRecord
from orchestrator.waiting.triggerer import Triggerer
from orchestrator.waiting.watchdog import LoopWatchdog
from triggers.base import TriggerRuntime, set_runtime

logger = logging.getLogger("orchestrator.engine")


class Engine:
    """Drives runs to completion. Create it with `Engine.open(...)`."""

    def __init__(
        self,
        *,
        settings: Settings,
        dagbag: DagBag,
        store: Store,
        executor: TaskExecutor,
        clock: Clock,
        task_group: TaskGroup,
    ) -> None:
        self.settings = settings
        self.dagbag = dagbag
        self.store = store
        self.executor = executor
        self.clock = clock
        self.scheduler = Scheduler(
            slots=settings.slots,
            pools=settings.pool_slots(),
            log_dir=str(settings.logs_dir),
            result_max_bytes=settings.result_max_bytes,
            max_interrupted_tries=settings.max_interrupted_tries,
        )
        self._inbox: list[Message] = []
        self.feed = ChangeFeed()  # committed changes: `subscribe` streams, `listen` callbacks
        self._wake = anyio.Event()
        self.watchdog = LoopWatchdog()
        self.runtime = TriggerRuntime(
            clock=clock,
            policy=InputPolicy.from_settings(settings),
            state=store,
            changes=self.subscribe,
        )
        self.triggerer = Triggerer(
            task_group,
            capacity=settings.triggerer_capacity,
            report=lambda key, outcome: self._post(TriggerEnded(key, outcome)),
            runtime=self.runtime,
            save_cursor=self._save_cursor,
            watchdog=self.watchdog,
        )
        self._driven = DrivenRuns(self.scheduler)
        self._requests = RunRequests(
            settings=settings,
            dagbag=dagbag,
            store=store,
            clock=clock,
            scheduler=self.scheduler,
            driven=self._driven,
            is_paused=lambda dag_id: dag_id in self.starter.paused,
            wake=lambda: self._wake.set(),  # the event of the moment: it is replaced
        )
        self.starter = RunStarter(
            task_group, runtime=self.runtime, post=self._post, new_run=self._requests.new_run
        )
        # Alerts join each commit: of its changes, and of what is overdue (see `overdue`).
        self.outbox = AlertOutbox(settings, self._driven.dag_of, self.scheduler, self.starter)
        self._edits = EditRequests(
            store=store,
            dagbag=dagbag,
            clock=clock,
            scheduler=self.scheduler,
            starter=self.starter,
            driven=self._driven,
            post=self._post,
            publish=self._publish,
        )
        self._dispatch = Dispatcher(
            task_group,
            settings=settings,
            dagbag=dagbag,
            executor=executor,
            runtime=self.runtime,
            post=self._post,
        )
        parts = (self.scheduler, self.starter, self._edits, self._driven, self._requests)
        self._decider = Decider(*parts)
        self._timers = TimerQueue(clock, lambda timer: self._post(timer_message(timer)))
        self.full_disk = FullDiskWait()  # `reason` is set while a full disk holds the engine
        self._starting_runs = False  # the daemon: schedules and run triggers start runs
        self._stepping = False
        self._settled = anyio.Event()
        self._grace: anyio.CancelScope | None = None

    @classmethod
    def open(
        cls,
        settings: Settings,
        *,
        dagbag: DagBag | None = None,
        clock: Clock | None = None,
        recover: bool = True,
        start_runs: bool = False,
    ) -> AbstractAsyncContextManager[Engine]:
        """Load the DAGs, open the store and the executor, and start scheduling.

        With `recover` (the default), runs left unfinished by an earlier process are picked
        up: deferred tasks wait on their triggers again, interrupted tries fail or retry.
        With `start_runs` (the daemon), DAGs' schedules and run triggers start runs by
        themselves; without it, runs start only when asked (`trigger`).
        """
        options = {"recover": recover, "start_runs": start_runs}
        return startup.open_engine(cls, settings, dagbag=dagbag, clock=clock, **options)

    # -- the public surface ---------------------------------------------------------------------

    async def trigger(
        self,
        dag_id: str,
        conf: Mapping[str, Any] | None = None,
        *,
        run_type: str = "manual",
        dedup_key: str | None = None,
        logical_date: float | None = None,
        event: EventRecord | None = None,
        ignore_depends_on_past: bool = False,
    ) -> str:
        """Create a run of `dag_id` (committed before this returns) and return its id.

        `event` (a webhook delivery) is recorded with the run, in the same transaction.
        Concurrent calls share transactions (the store's group commit), so a burst of API
        triggers costs one fsync per group, not one per run. With `ignore_depends_on_past`,
        no task of the run waits on the DAG's previous run (this engine's memory only).
        """
        fields = {"run_type": run_type, "dedup_key": dedup_key, "logical_date": logical_date}
        return await self._requests.trigger(
            dag_id, conf, event=event, ignore_depends_on_past=ignore_depends_on_past, **fields
        )

    async def backfill(self, dag_id: str, start: float, end: float) -> tuple[list[str], int]:
        """Queue a run for every interval of the DAG's schedule from `start` to `end`.

        Intervals that already have a run (scheduled, or an earlier backfill) are skipped:
        returns the new runs' ids and how many were skipped. `max_active_runs` applies.
        """
        return await self._requests.backfill(dag_id, start, end)

    async def set_paused(self, dag_id: str, paused: bool) -> None:
        """Pause a DAG (no new run starts; running ones go on) or unpause it."""
        self.dagbag.get(dag_id)
        tx = Transitions(self.clock.now())
        tx.batch.set_dag_paused(dag_id, paused)
        self.starter.set_paused(dag_id, paused, tx)
        await self._commit(tx.batch)
        self.scheduler.set_paused(dag_id, paused)
        self.starter.after_commit()
        self._arm_timers()
        self._wake.set()

    async def wait(self, run_id: str) -> RunRecord:
        """Wait until the run has finished, and return its final record."""
        done = self._driven.done_event(run_id)
        if done is not None:
            await done.wait()
        record = await self.store.get_run(run_id)
        if record is None:
            raise RunError(f"there is no run with id {run_id!r}")
        if not record.state.finished:
            raise RunError(
                f"run {run_id!r} is {record.state} but no engine in this process is driving it"
            )
        return record

    async def cancel(self, run_id: str) -> bool:
        """Cancel a run: its running tasks are killed, the others marked cancelled.

        Returns False if the run had already finished (nothing to do). A run this engine does
        not drive but that is unfinished in the store (no daemon runs it; its DAG is not
        loaded) is cancelled in the store alone, at once. Raises `RunNotFoundError`.
        """
        return await self._edits.cancel(run_id)

    async def clear(
        self, run_id: str, task_ids: Sequence[str], *, downstream: bool = True
    ) -> list[TaskKey]:
        """Clear task instances so that they run again; returns their keys once committed.

        Airflow's "clear" (see scheduling/run_edits.py): the tasks (every element of an
        expanded one) and, with `downstream`, everything downstream of them go back to `none`,
        their results forgotten, their try numbers going on, their retries given back. A
        finished run is queued again and driven by this engine; in a run still going, an
        instance in flight is refused with a `RunError`, as are unknown task ids.
        """
        task_ids = [task_ids] if isinstance(task_ids, str) else list(task_ids)
        return await self._edits.clear(run_id, task_ids, downstream)

    async def apply_file(self, result: FileResult) -> FileChange:
        """Use a DAG file's new import result (the daemon reloads changed files with this)."""
        change = replace_file(self.dagbag, result, pools=self.settings.pool_slots())
        await startup.pause_new_dags(self.store, change.loaded, self.starter, self.scheduler)
        tx = Transitions(self.clock.now())
        for dag_id in change.removed:
            self.starter.deactivate(dag_id)
        if self._starting_runs:
            self.starter.activate_all(change.loaded, tx)
        await self._commit_and_act(tx)
        await self._commit(startup.dags_batch(self.dagbag, self.clock.now()))
        return change

    async def shutdown(self, grace: float) -> None:
        """Stop taking work, let running tries finish for `grace` seconds, then interrupt them.

        Run triggers and schedules stop at once and no new task starts. A try still running
        when the grace period ends is killed and recorded as interrupted: its task instance
        is scheduled again (without using up a retry) and runs when the daemon starts again.
        """
        self.starter.stop()
        self.scheduler.draining = True
        self._wake.set()
        with anyio.move_on_after(grace) as self._grace:
            await self._until_settled()
        if self._dispatch.running:
            logger.warning(
                "%d task(s) still running after the %g s grace period: stopping them",
                self._dispatch.running,
                grace,
            )
            crashpoint("shutdown_grace")
            self._decider.interrupting = True
            self._dispatch.stop_all()
            with anyio.move_on_after(30):
                await self._until_settled()

    def hurry(self) -> None:
        """End the shutdown's grace period now (a second SIGTERM or Ctrl-C)."""
        if self._grace is not None:
            self._grace.cancel()

    def subscribe(self) -> AbstractAsyncContextManager[MemoryObjectReceiveStream[Change]]:
        """A stream of every state change, each sent after the store committed it."""
        return self.feed.subscribe()

    def pending_timers(self) -> list[Timer]:
        """Timers set and not yet due (retries, timeouts, schedule ticks), for diagnostics."""
        return self._timers.pending()

    # -- the loop: one wake-up is one step ------------------------------------------------------

    def _post(self, message: Message) -> None:
        self._inbox.append(message)
        self._wake.set()

    async def _schedule_forever(self) -> None:
        set_runtime(self.runtime)  # sensors build their triggers here, on the engine's clock
        while True:
            await self._wake.wait()
            self._wake = anyio.Event()
            self._stepping = True
            try:
                await self._step()
            finally:
                self._stepping = False
                self._settled.set()

    async def _step(self) -> None:
        """Receive what arrived, decide, commit once, then act on what is now durable."""
        inbox, self._inbox = self._inbox, []
        now = self.clock.now()  # one moment, or a tick between prepare and decide is lost
        prepared = await self._decider.prepare(inbox, self.store, now)
        step = self._decider.decide(inbox, prepared, now)
        self.outbox.add(step.tx)
        crash_before_commit(inbox)
        await self._commit(step.tx.batch)
        crash_after_commit(inbox, self.starter.runs_created)
        self.outbox.committed()
        self._publish(step.tx.changes)
        self._after_commit(step.tx)
        self._edits.answer()
        self._dispatch.act(step)

    def _after_commit(self, tx: Transitions) -> None:
        """Act on what is now durable: stop and start hosting triggers, set timers."""
        for key in tx.disarmed:
            self.triggerer.disarm(key)
        armings, self.scheduler.armings = self.scheduler.armings, []
        self.triggerer.arm_all(armings)  # each a (key, trigger, cursor) named tuple
        self.starter.after_commit()
        self._arm_timers()

    def _publish(self, changes: list[Change]) -> None:
        self._driven.note_ends(changes)
        self.feed.publish(changes)

    async def _until_settled(self) -> None:
        """Wait until no try runs and every message so far is committed."""
        while self._dispatch.running or self._inbox or self._stepping:
            self._settled = anyio.Event()
            await self._settled.wait()

    # -- timers, cursors and start-up -----------------------------------------------------------

    def _arm_timers(self) -> None:
        timers = [*self.scheduler.timers, *self.starter.timers, *self.outbox.overdue.timers]
        self.scheduler.timers, self.starter.timers, self.outbox.overdue.timers = [], [], []
        self._timers.add(timers)

    async def _save_cursor(self, key: TaskKey, cursor: Any) -> None:
        tx = Transitions(self.clock.now())
        tx.batch.save_trigger_cursor(key, cursor)
        await self._commit(tx.batch)

    async def _start(self, *, recover: bool, start_runs: bool) -> None:
        """Record the DAGs, pick up what an earlier process left, and start starting runs."""
        await self._commit(startup.dags_batch(self.dagbag, self.clock.now()))
        await startup.load_starting_state(
            self.store, self.starter, self.outbox.overdue, self.scheduler
        )
        parts = (self.scheduler, self._driven, self.starter, self._dispatch)
        if recover and (
            tx := await startup.recover_runs(self.store, self.dagbag, parts, self.clock)
        ):
            await self._commit_and_act(tx)
        if start_runs:  # the daemon: every loaded DAG's schedule and run triggers start runs
            self._starting_runs = True
            tx = Transitions(self.clock.now())
            self.starter.activate_all(self.dagbag.dags.values(), tx)
            await self._commit_and_act(tx)

    async def _commit_and_act(self, tx: Transitions) -> None:
        """Commit a transaction made outside a step, then act on it as a step would."""
        self.outbox.add(tx)
        await self._commit(tx.batch)
        self.outbox.committed()
        self._publish(tx.changes)
        self._after_commit(tx)
        self._wake.set()

    async def _commit(self, batch: WriteBatch) -> None:
        """Commit, waiting out a full disk: outside a step too (start, reload, pause, cursors)."""
        await self.full_disk.commit(self.store.commit, batch)
