"""The engine: store, scheduler, executor and timers in one event loop, woken by events.

```python
async with Engine.open(settings) as engine:
    run_id = await engine.trigger("retrain", conf={"path": "data/x.csv"})
    record = await engine.wait(run_id)
```

Nothing here polls. The loop sleeps on `_wake` and is woken by what can change a decision: a
run requested or cancelled, a try finished, a retry backoff come due. Each wake-up handles
everything that arrived since the last one as one scheduling step and one store transaction,
so a burst of a hundred finished tasks costs one commit, not a hundred.
"""

from __future__ import annotations

import heapq
import inspect
import itertools
import json
import logging
import math
import secrets
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from typing import Any

import anyio
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from orchestrator.authoring.dag import DAG
from orchestrator.authoring.references import resolve_refs
from orchestrator.changes import Change, RunChanged
from orchestrator.clock import Clock, SystemClock
from orchestrator.config import Settings
from orchestrator.crashpoints import crash_armed, crashpoint
from orchestrator.errors import DagPausedError, RunError, RunLimitError
from orchestrator.execution.executor import Executor
from orchestrator.execution.jobs import Outcome, TaskJob, TaskOutcome
from orchestrator.loading.dagbag import DagBag, FileChange, load_dag_bag, replace_file
from orchestrator.loading.importer import FileResult
from orchestrator.scheduling.active_runs import ActiveRun, DagPlan, TaskInstance, Transitions
from orchestrator.scheduling.autostart import DagDue, RunStarter, SourceEvent, StarterMessage
from orchestrator.scheduling.deferred import Timer
from orchestrator.scheduling.recovery import rebuild_run
from orchestrator.scheduling.run_edits import (
    cancel_stored_run,
    clear_instances,
    clear_stored_run,
    clear_targets,
    dag_of_run,
    load_run,
    stored_run,
)
from orchestrator.scheduling.schedule_ticks import backfill, interval_key
from orchestrator.scheduling.scheduler import Scheduler
from orchestrator.state import RunState
from orchestrator.store import Store, open_store
from orchestrator.store.base import TaskKey, WriteBatch
from orchestrator.store.records import DagRecord, EventRecord, ImportErrorRecord, RunRecord
from orchestrator.waiting.policy import InputPolicy
from orchestrator.waiting.triggerer import Fired, Triggerer, TriggerOutcome
from orchestrator.waiting.watchdog import LoopWatchdog
from triggers.base import TriggerRuntime, set_runtime

logger = logging.getLogger("orchestrator.engine")


@dataclass(frozen=True)
class _Finished:
    ti: TaskInstance
    outcome: TaskOutcome


@dataclass(frozen=True)
class _Cancel:
    run_id: str


@dataclass(eq=False)
class _Clear:
    """A clear, applied in a step and answered (`done`) once the step committed or refused it.

    `stored` is the finished run as the store has it, when the scheduler does not hold it.
    """

    run_id: str
    task_ids: tuple[str, ...]
    downstream: bool
    stored: tuple[RunRecord, ActiveRun] | None
    done: anyio.Event = field(default_factory=anyio.Event)
    cleared: list[TaskKey] = field(default_factory=list)
    error: RunError | None = None
    missed: bool = False  # the run finished before the step: read it from the store, again


@dataclass(frozen=True)
class _TimerDue:
    timer: Timer


@dataclass(frozen=True)
class _TriggerEnded:
    key: tuple[str, str, int]
    outcome: TriggerOutcome


_EngineMessage = _Finished | _Cancel | _Clear | _TimerDue | _TriggerEnded
_Message = _EngineMessage | StarterMessage


class Engine:
    """Drives runs to completion. Create it with `Engine.open(...)`."""

    def __init__(
        self,
        *,
        settings: Settings,
        dagbag: DagBag,
        store: Store,
        executor: Executor,
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
        )
        self._tg = task_group
        self._inbox: list[_Message] = []
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
            report=lambda key, outcome: self._post(_TriggerEnded(key, outcome)),
            runtime=self.runtime,
            save_cursor=self._save_cursor,
            watchdog=self.watchdog,
        )
        self.starter = RunStarter(
            task_group, runtime=self.runtime, post=self._post, new_run=self._new_run
        )
        self._run_dags: dict[str, DAG] = {}  # run_id -> DAG, for the runs this engine drives
        self._starting_runs = False  # the daemon: schedules and run triggers start runs
        self._interrupting = False  # shutting down: a cancelled try is interrupted, not failed
        self._stepping = False
        self._settled = anyio.Event()
        self._grace: anyio.CancelScope | None = None
        self._timers: list[tuple[float, int, Timer]] = []
        self._timer_order = itertools.count()
        self._timer_added = anyio.Event()
        self._timer_scope: anyio.CancelScope | None = None
        self._done: dict[str, anyio.Event] = {}
        self._scopes: dict[tuple[str, str, int], anyio.CancelScope] = {}
        self._plans: dict[int, DagPlan] = {}
        self._subscribers: list[MemoryObjectSendStream[Change]] = []
        self._editing = anyio.Lock()  # clears (and store-only cancels) one at a time
        self._cleared: list[_Clear] = []  # applied in this step: answered after its commit
        self._committing: Counter[str] = Counter()  # triggers on their way to the store, per DAG

    @classmethod
    @asynccontextmanager
    async def open(
        cls,
        settings: Settings,
        *,
        dagbag: DagBag | None = None,
        clock: Clock | None = None,
        recover: bool = True,
        start_runs: bool = False,
    ) -> AsyncIterator[Engine]:
        """Load the DAGs, open the store and the executor, and start scheduling.

        With `recover` (the default), runs left unfinished by an earlier process are picked
        up: deferred tasks wait on their triggers again, interrupted tries fail or retry.
        With `start_runs` (the daemon), DAGs' schedules and run triggers start runs by
        themselves; without it, runs start only when asked (`trigger`).
        """
        if dagbag is None:
            dagbag = load_dag_bag(settings.dags_folder, pools=settings.pool_slots())
        try:
            async with (
                open_store(settings.state_dir, synchronous=settings.synchronous) as store,
                Executor.open(
                    slots=settings.slots,
                    worker_max_tasks=settings.worker_max_tasks,
                    prestart=_workers_to_prestart(settings, dagbag),
                ) as executor,
                anyio.create_task_group() as tg,
            ):
                engine = cls(
                    settings=settings,
                    dagbag=dagbag,
                    store=store,
                    executor=executor,
                    clock=clock or SystemClock(),
                    task_group=tg,
                )
                await engine._record_dags()
                await engine.starter.load(store)
                for dag_id in engine.starter.paused:
                    engine.scheduler.set_paused(dag_id, True)
                if recover:
                    await engine._recover()
                if start_runs:
                    await engine._start_runs_starting()
                tg.start_soon(engine._schedule_forever)
                tg.start_soon(engine._time_forever)
                engine.watchdog.start()
                try:
                    yield engine
                finally:
                    engine.watchdog.stop()
                    tg.cancel_scope.cancel()
        except BaseExceptionGroup as group:
            raise _lone_error(group) from None

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
    ) -> str:
        """Create a run of `dag_id` (committed before this returns) and return its id.

        `event` (a webhook delivery) is recorded with the run, in the same transaction.
        Concurrent calls share transactions (the store's group commit), so a burst of API
        triggers costs one fsync per group, not one per run.
        """
        dag = self.dagbag.get(dag_id)
        if dag_id in self.starter.paused:
            raise DagPausedError(
                f"DAG {dag_id!r} is paused, so no run of it starts; unpause it first "
                f"(`orchestrator dags unpause {dag_id}`)",
                dag_id=dag_id,
            )
        conf = _checked_conf(conf)
        self._check_queue_room(dag_id)
        batch = WriteBatch()
        record = self._run_record(
            dag, conf, run_type=run_type, dedup_key=dedup_key, logical_date=logical_date
        )
        batch.create_run(record, [])
        if event is not None:
            batch.add_events([replace(event, dag_id=dag_id, run_id=record.run_id)])
        self._committing[dag_id] += 1
        try:
            await self.store.commit(batch)
        finally:
            self._committing[dag_id] -= 1
        self._adopt(record, dag)
        self._wake.set()
        return record.run_id

    def _check_queue_room(self, dag_id: str) -> None:
        """Refuse a trigger when the DAG's queue is full: a flood must not grow it without end."""
        waiting = self.scheduler.queued_runs(dag_id) + self._committing[dag_id]
        if waiting >= self.settings.max_queued_runs:
            raise RunLimitError(
                f"DAG {dag_id!r} has {waiting} runs waiting to start, the most "
                f"`max_queued_runs` allows ({self.settings.max_queued_runs}); try again "
                "when some have started",
                retry_after=1.0,
            )

    def _new_run(self, dag: DAG, conf: dict[str, Any], batch: WriteBatch, **fields: Any) -> str:
        """A queued run created in `batch` (the step's), handed to the scheduler at once."""
        record = self._run_record(dag, conf, **fields)
        batch.create_run(record, [])
        self._adopt(record, dag)
        return record.run_id

    def _run_record(self, dag: DAG, conf: dict[str, Any], **fields: Any) -> RunRecord:
        now = self.clock.now()
        return RunRecord(
            run_id=new_run_id(now),
            dag_id=dag.dag_id,
            state=RunState.QUEUED,
            conf=conf,
            queued_at=now,
            **fields,
        )

    def _adopt(self, record: RunRecord, dag: DAG) -> None:
        """Drive this run: the scheduler gets it, and `wait` can wait for it."""
        self._done[record.run_id] = anyio.Event()
        self._run_dags[record.run_id] = dag
        self.scheduler.add_run(ActiveRun(record, dag, self._plan(dag)))

    async def backfill(self, dag_id: str, start: float, end: float) -> tuple[list[str], int]:
        """Queue a run for every interval of the DAG's schedule from `start` to `end`.

        Intervals that already have a run (scheduled, or an earlier backfill) are skipped:
        returns the new runs' ids and how many were skipped. `max_active_runs` applies.
        """
        dag = self.dagbag.get(dag_id)
        intervals = backfill(dag, start, end)
        keys = [interval_key(interval) for interval in intervals]
        known = await self.store.known_run_keys(dag_id, keys)
        batch = WriteBatch()
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
        for record in records:
            batch.create_run(record, [])
        await self.store.commit(batch)
        for record in records:
            self._adopt(record, dag)
        self._wake.set()
        return [record.run_id for record in records], len(known)

    async def set_paused(self, dag_id: str, paused: bool) -> None:
        """Pause a DAG (no new run starts; running ones go on) or unpause it."""
        self.dagbag.get(dag_id)
        tx = Transitions(self.clock.now())
        tx.batch.set_dag_paused(dag_id, paused)
        self.starter.set_paused(dag_id, paused, tx)
        await self.store.commit(tx.batch)
        self.scheduler.set_paused(dag_id, paused)
        self.starter.after_commit()
        self._arm_timers()
        self._wake.set()

    async def wait(self, run_id: str) -> RunRecord:
        """Wait until the run has finished, and return its final record."""
        done = self._done.get(run_id)
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
        if run_id in self.scheduler.runs:
            self._post(_Cancel(run_id))
            return True
        async with self._editing:
            record = await stored_run(self.store, run_id)
            if record.state.finished:
                return False
            self._publish(await cancel_stored_run(self.store, record, now=self.clock.now()))
            return True

    async def clear(
        self, run_id: str, task_ids: Sequence[str], *, downstream: bool = True
    ) -> list[TaskKey]:
        """Clear task instances so that they run again; returns their keys once committed.

        Airflow's "clear" (see orchestrator/scheduling/run_edits.py): the tasks (every element of an
        expanded one) and, with `downstream`, everything downstream of them go back to `none`,
        their results forgotten, their try numbers going on, their retries given back. A
        finished run is queued again and driven by this engine; in a run still going, an
        instance in flight is refused with a `RunError`, as are unknown task ids.
        """
        task_ids = [task_ids] if isinstance(task_ids, str) else list(task_ids)
        async with self._editing:  # a finished run is read, then queued again: one at a time
            while True:
                stored = None
                if run_id not in self.scheduler.runs:
                    record = await stored_run(self.store, run_id)
                    if not record.state.finished:
                        return await self._clear_undriven(record, task_ids, downstream)
                    stored = (record, await self._load_run(record))
                request = _Clear(run_id, tuple(task_ids), downstream, stored)
                self._post(request)
                await request.done.wait()
                if not request.missed:
                    break
        if request.error is not None:
            raise request.error
        return request.cleared

    async def _load_run(self, record: RunRecord) -> ActiveRun:
        dag = dag_of_run(self.dagbag, record)
        return await load_run(self.store, record, dag, self._plan(dag))

    async def _clear_undriven(
        self, record: RunRecord, task_ids: Sequence[str], downstream: bool
    ) -> list[TaskKey]:
        """An unfinished run nobody here drives: cleared in the store, for whoever drives it."""
        keys, changes = await clear_stored_run(
            self.store, self.dagbag, record, task_ids, downstream=downstream, now=self.clock.now()
        )
        self._publish(changes)
        return keys

    def _clear_in_step(self, request: _Clear, tx: Transitions) -> None:
        """Apply a clear in this step's transaction; `request` is answered after the commit."""
        self._cleared.append(request)
        run = self.scheduler.runs.get(request.run_id)
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

    def _adopt_cleared(self, record: RunRecord, run: ActiveRun) -> None:
        """Drive a finished run a clear queued again, as if it had just been triggered."""
        self._done[run.run_id] = anyio.Event()
        self._run_dags[run.run_id] = run.dag
        self.scheduler.add_run(run)
        self.starter.note_unfinished(record)  # a scheduled run holds its DAG's place again

    def _answer_clears(self) -> None:
        for request in self._cleared:
            request.done.set()
        self._cleared = []

    async def apply_file(self, result: FileResult) -> FileChange:
        """Use a DAG file's new import result (the daemon reloads changed files with this)."""
        change = replace_file(self.dagbag, result, pools=self.settings.pool_slots())
        tx = Transitions(self.clock.now())
        for dag_id in change.removed:
            self.starter.deactivate(dag_id)
        if self._starting_runs:
            for dag in change.loaded:
                self.starter.activate(dag, tx)
        await self.store.commit(tx.batch)
        await self._record_dags()
        self._after_commit(tx)
        self._wake.set()
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
        if self._scopes:
            logger.warning(
                "%d task(s) still running after the %g s grace period: stopping them",
                len(self._scopes),
                grace,
            )
            crashpoint("shutdown_grace")
            self._interrupting = True
            for scope in list(self._scopes.values()):
                scope.cancel()
            with anyio.move_on_after(30):
                await self._until_settled()

    def hurry(self) -> None:
        """End the shutdown's grace period now (a second SIGTERM or Ctrl-C)."""
        if self._grace is not None:
            self._grace.cancel()

    async def _until_settled(self) -> None:
        """Wait until no try runs and every message so far is committed."""
        while self._scopes or self._inbox or self._stepping:
            self._settled = anyio.Event()
            await self._settled.wait()

    @asynccontextmanager
    async def subscribe(self) -> AsyncIterator[MemoryObjectReceiveStream[Change]]:
        """A stream of every state change, each sent after the store committed it."""
        send, receive = anyio.create_memory_object_stream[Change](math.inf)
        self._subscribers.append(send)
        try:
            async with receive:
                yield receive
        finally:
            self._subscribers.remove(send)
            send.close()

    # -- the loop -------------------------------------------------------------------------------

    def _post(self, message: _Message) -> None:
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
        """Handle everything that arrived, decide, commit once, then act."""
        callbacks: list[tuple[TaskInstance, str]] = []
        to_kill: list[TaskInstance] = []
        inbox, self._inbox = self._inbox, []
        prepared = await self.starter.prepare(inbox, self.store, self.clock.now())
        tx = Transitions(self.clock.now())
        self.starter.runs_created = 0
        for message in inbox:
            if isinstance(message, StarterMessage):
                self.starter.apply(message, prepared, tx)
            else:
                self._handle(message, tx, callbacks, to_kill)
        finished = self._settle_runs(tx)
        started = self.scheduler.allocate(tx)
        _crash_before_commit(inbox)
        await self.store.commit(tx.batch)
        _crash_after_commit(inbox, self.starter.runs_created)
        self._publish(tx.changes)
        self._after_commit(tx)
        self._answer_clears()
        for ti in to_kill:
            if ti.key in self._scopes:
                self._scopes[ti.key].cancel()
        for ti in started:
            self._tg.start_soon(self._execute, ti)
        for ti, hook in callbacks:
            self._call_task_callback(ti, hook)
        for run in finished:
            self._call_run_callback(run)

    def _handle(
        self,
        message: _EngineMessage,
        tx: Transitions,
        callbacks: list[tuple[TaskInstance, str]],
        to_kill: list[TaskInstance],
    ) -> None:
        if isinstance(message, _Finished):
            if self._interrupting and message.outcome.error == "cancelled":
                reason = "interrupted: the daemon stopped and its grace period ended"
                self.scheduler.interrupt(message.ti, reason, tx)
                return
            hook = self.scheduler.finish(message.ti, message.outcome, tx)
            if hook:
                callbacks.append((message.ti, hook))
        elif isinstance(message, _TimerDue | _TriggerEnded):
            key, hook = self._handle_wait_ended(message, tx)
            ti = self.scheduler.instance(key)
            if hook and ti is not None:
                callbacks.append((ti, hook))
        elif isinstance(message, _Clear):
            self._clear_in_step(message, tx)
        else:
            run = self.scheduler.runs.get(message.run_id)
            if run is not None and not run.cancelling:
                to_kill.extend(self.scheduler.cancel(run, tx))

    def _handle_wait_ended(
        self, message: _TimerDue | _TriggerEnded, tx: Transitions
    ) -> tuple[tuple[str, str, int], str | None]:
        """A timer came due or a trigger ended: retry, resume, time out or fail."""
        if isinstance(message, _TimerDue):
            timer = message.timer
            if timer.kind == "retry":
                self.scheduler.retry(timer.key, tx)
                return timer.key, None
            return timer.key, self.scheduler.time_out(timer.key, timer.due, tx)
        outcome = message.outcome
        if isinstance(outcome, Fired):
            return message.key, self.scheduler.fire(message.key, outcome.event.payload, tx)
        return message.key, self.scheduler.fail_deferral(message.key, outcome.error, tx)

    def _after_commit(self, tx: Transitions) -> None:
        """Act on what is now durable: stop and start hosting triggers, set timers."""
        for key in tx.disarmed:
            self.triggerer.disarm(key)
        armings, self.scheduler.armings = self.scheduler.armings, []
        for arming in armings:
            self.triggerer.arm(arming.key, arming.trigger, arming.cursor)
        self.starter.after_commit()
        self._arm_timers()

    def _settle_runs(self, tx: Transitions) -> list[ActiveRun]:
        """Admit queued runs and settle readiness until nothing more changes.

        Successes and finished runs may be events for other DAGs (assets, `DagFinished`):
        their runs are created in this same transaction, and admitted too.
        """
        finished: list[ActiveRun] = []
        followed = 0
        while True:
            self.scheduler.admit_runs(tx)
            done = self.scheduler.advance(tx)
            finished.extend(done)
            created = self.starter.runs_created
            followed = self.starter.follow(tx, followed, self._run_dags.get)
            if not done and self.starter.runs_created == created:
                return finished

    def _publish(self, changes: list[Change]) -> None:
        for change in changes:
            if isinstance(change, RunChanged) and change.state.finished:
                self._run_dags.pop(change.run_id, None)
                done = self._done.pop(change.run_id, None)
                if done is not None:
                    done.set()
            for subscriber in self._subscribers:
                subscriber.send_nowait(change)

    # -- executing ------------------------------------------------------------------------------

    async def _execute(self, ti: TaskInstance) -> None:
        set_runtime(self.runtime)  # async tasks (poking sensors) run in this task
        outcome = TaskOutcome(status=Outcome.FAILED, error="cancelled")
        with anyio.CancelScope() as scope:
            self._scopes[ti.key] = scope
            try:
                outcome = await self._run_try(ti)
            finally:
                del self._scopes[ti.key]
        self._post(_Finished(ti, outcome))

    async def _run_try(self, ti: TaskInstance) -> TaskOutcome:
        crashpoint("task_dispatched")
        try:
            job = self._job(ti)
        except (KeyError, IndexError, TypeError) as error:
            return TaskOutcome(
                status=Outcome.FAILED,
                error=f"cannot resolve the task's inputs: {type(error).__name__}: {error}",
            )
        return await self.executor.execute(job, ti.task)

    def _job(self, ti: TaskInstance) -> TaskJob:
        context = ti.context(ti.log_path)
        inputs = resolve_refs(ti.task.inputs, ti.run.result_view(), context)
        if ti.map_index >= 0:
            inputs = {**inputs, "mapped": ti.mapped_inputs}
        in_process = ti.task.options.in_process
        resume = ti.next_call if ti.resuming else None
        return TaskJob(
            dag_id=ti.run.dag.dag_id,
            task_id=ti.task_id,
            fileloc=self.dagbag.files.get(ti.run.dag.dag_id, ti.run.dag.site.file),
            context=context,
            inputs=inputs,
            timeout=ti.task.options.timeout_seconds,
            in_process=self.settings.in_process if in_process is None else in_process,
            result_max_bytes=self.settings.result_max_bytes,
            resume=resume,
        )

    # -- timers ---------------------------------------------------------------------------------

    def _arm_timers(self) -> None:
        timers = [*self.scheduler.timers, *self.starter.timers]
        self.scheduler.timers, self.starter.timers = [], []
        for timer in timers:
            earlier = not self._timers or timer.due < self._timers[0][0]
            heapq.heappush(self._timers, (timer.due, next(self._timer_order), timer))
            if earlier and self._timer_scope is not None:
                self._timer_scope.cancel()
        if timers:
            self._timer_added.set()

    async def _time_forever(self) -> None:
        """Sleep until the earliest timer; a new earlier timer interrupts the sleep."""
        while True:
            if not self._timers:
                await self._timer_added.wait()
                self._timer_added = anyio.Event()
                continue
            with anyio.CancelScope() as scope:
                self._timer_scope = scope
                await self.clock.sleep_until(self._timers[0][0])
            self._timer_scope = None
            now = self.clock.now()
            while self._timers and self._timers[0][0] <= now:
                timer = heapq.heappop(self._timers)[2]
                self._post(DagDue(timer.key[0], "dag") if timer.kind == "dag" else _TimerDue(timer))

    # -- triggers -------------------------------------------------------------------------------

    async def _save_cursor(self, key: tuple[str, str, int], cursor: Any) -> None:
        batch = WriteBatch()
        batch.save_trigger_cursor(key, cursor)
        await self.store.commit(batch)

    async def _recover(self) -> None:
        """Pick up the runs an earlier process left unfinished (see scheduling/recovery.py)."""
        records = await self.store.list_unfinished_runs()
        if not records:
            return
        triggers = {row.key: row for row in await self.store.list_triggers()}
        tx = Transitions(self.clock.now())
        for record in records:
            dag = self.dagbag.dags.get(record.dag_id)
            if dag is None:
                logger.warning(
                    "run %s of DAG %s is unfinished, but the DAG is not loaded",
                    record.run_id,
                    record.dag_id,
                )
                continue
            instances = await self.store.list_task_instances(record.run_id)
            results = await self.store.get_results(record.run_id)
            run = rebuild_run(record, dag, self._plan(dag), instances, results)
            self.scheduler.recover(run, triggers, tx)
            self._done[record.run_id] = anyio.Event()
            self._run_dags[record.run_id] = dag
            self.starter.note_unfinished(record)
        await self.store.commit(tx.batch)
        self._publish(tx.changes)
        self._after_commit(tx)
        self._wake.set()

    async def _start_runs_starting(self) -> None:
        """Hand every loaded DAG's schedule and run triggers to the run starter."""
        self._starting_runs = True
        tx = Transitions(self.clock.now())
        for dag in self.dagbag.dags.values():
            self.starter.activate(dag, tx)
        await self.store.commit(tx.batch)
        self._after_commit(tx)
        self._wake.set()

    # -- callbacks ------------------------------------------------------------------------------

    def _call_task_callback(self, ti: TaskInstance, hook: str) -> None:
        callback = getattr(ti.task.options, hook)
        if callback is not None:
            self._tg.start_soon(_call_safely, callback, ti.context(ti.log_path), hook)

    def _call_run_callback(self, run: ActiveRun) -> None:
        hook = "on_success" if run.state is RunState.SUCCESS else "on_failure"
        callback = getattr(run.dag, hook)
        if callback is not None and run.state is not RunState.CANCELLED:
            self._tg.start_soon(_call_safely, callback, run.run_id, hook)

    # -- start-up -------------------------------------------------------------------------------

    async def _record_dags(self) -> None:
        now = self.clock.now()
        batch = WriteBatch()
        for dag_id, dag in self.dagbag.dags.items():
            fileloc = self.dagbag.files.get(dag_id, dag.site.file)
            batch.upsert_dag(
                DagRecord(
                    dag_id=dag_id, fileloc=fileloc, description=dag.description, updated_at=now
                )
            )
        batch.replace_import_errors(
            [
                ImportErrorRecord(
                    fileloc=error.file or "",
                    line=error.line,
                    message=error.message,
                    recorded_at=now,
                )
                for error in self.dagbag.errors
            ]
        )
        await self.store.commit(batch)

    def _plan(self, dag: DAG) -> DagPlan:
        plan = self._plans.get(id(dag))
        if plan is None:
            plan = self._plans[id(dag)] = DagPlan.of(dag)
        return plan


async def _call_safely(callback: Callable[[Any], Any], argument: Any, hook: str) -> None:
    """Run a user callback; its failure is logged and never reaches the engine."""
    try:
        if inspect.iscoroutinefunction(callback):
            await callback(argument)
        else:
            await anyio.to_thread.run_sync(callback, argument)
    except Exception:
        logger.exception("%s callback %r raised", hook, callback)


def _lone_error(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The one real error inside a task group's exception group, so callers can catch it.

    A `StoreError` from a commit or a `DagNotFoundError` from the caller's block is what the
    user must see, not an `ExceptionGroup` around it; several errors stay grouped.
    """
    leaves: list[BaseException] = []
    pending: list[BaseException] = [group]
    while pending:
        error = pending.pop()
        if isinstance(error, BaseExceptionGroup):
            pending.extend(error.exceptions)
        else:
            leaves.append(error)
    return leaves[0] if len(leaves) == 1 else group


def _crash_before_commit(inbox: list[_Message]) -> None:
    """Crash points of the crash tests (no-ops unless ORCHESTRATOR_CRASH_AT names one)."""
    if not crash_armed():
        return  # every step passes here: no scan of its messages in production
    if any(isinstance(message, SourceEvent) for message in inbox):
        crashpoint("event_received")
    if any(
        isinstance(message, _Finished) and message.outcome.status is Outcome.SUCCESS
        for message in inbox
    ):
        crashpoint("task_succeeded")


def _crash_after_commit(inbox: list[_Message], runs_created: int) -> None:
    if not crash_armed():
        return
    if runs_created and any(isinstance(message, SourceEvent) for message in inbox):
        crashpoint("run_committed")
    if runs_created and any(isinstance(message, DagDue) for message in inbox):
        crashpoint("schedule_tick")
    if any(
        isinstance(message, _Finished) and message.outcome.status is Outcome.SUCCESS
        for message in inbox
    ):
        crashpoint("success_committed")


def _checked_conf(conf: Mapping[str, Any] | None) -> dict[str, Any]:
    if conf is None:
        return {}
    if not isinstance(conf, Mapping):
        raise RunError(f"a run's conf must be a JSON object, got {type(conf).__name__}")
    try:
        return dict(json.loads(json.dumps(dict(conf), allow_nan=False)))
    except (TypeError, ValueError) as error:
        raise RunError(f"a run's conf must be JSON-serialisable: {error}") from None


def new_run_id(now: float) -> str:
    """The queue time to the second, then 48 random bits: readable, sortable, and unique even
    at thousands of runs a second (24 bits collided in a webhook benchmark)."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))
    return f"{stamp}-{secrets.token_hex(6)}"


def _workers_to_prestart(settings: Settings, dagbag: DagBag) -> int:
    """Warm worker processes only if some task will need one."""
    for dag in dagbag.dags.values():
        for task in dag.tasks.values():
            in_process = task.options.in_process
            if not task.is_async and not (
                settings.in_process if in_process is None else in_process
            ):
                return settings.slots
    return 0
