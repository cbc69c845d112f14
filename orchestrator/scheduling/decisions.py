"""One step's decisions: every message applied to the scheduler's state, in one transaction.

Nothing here touches the store or starts anything: a `Step` only records what was decided (the
transaction to commit, the tries to start and stop, the callbacks to call), and the engine acts
on it once the transaction has committed. That order is what makes a crash at any moment safe.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from orchestrator.execution.jobs import Outcome, TaskOutcome
from orchestrator.scheduling.active_runs import ActiveRun, TaskInstance, Transitions
from orchestrator.scheduling.autostart import Prepared, RunStarter, StarterMessage
from orchestrator.scheduling.driven_runs import DrivenRuns
from orchestrator.scheduling.edit_requests import EditRequests
from orchestrator.scheduling.messages import (
    CancelRequest,
    ClearRequest,
    EngineMessage,
    Message,
    TimerDue,
    TriggerEnded,
    TryFinished,
)
from orchestrator.scheduling.past_runs import PAST_READ
from orchestrator.scheduling.run_requests import RunRequests
from orchestrator.scheduling.run_timeouts import timed_out
from orchestrator.scheduling.scheduler import Scheduler
from orchestrator.state import TaskState
from orchestrator.store import Store
from orchestrator.store.base import TaskKey
from orchestrator.waiting.triggerer import Fired

# Read for every try's end, as a module constant (an enum class's attribute is slow in 3.11).
_RUNNING = TaskState.RUNNING


@dataclass
class Step:
    """What one step decided, to be acted on once `tx` has committed."""

    tx: Transitions
    started: list[TaskInstance] = field(default_factory=list)  # tries to start
    stopping: list[TaskInstance] = field(default_factory=list)  # tries of cancelled runs
    callbacks: list[tuple[TaskInstance, str]] = field(default_factory=list)  # (ti, hook)
    finished: list[ActiveRun] = field(default_factory=list)  # runs whose callbacks to call


class Decider:
    """Turns an inbox of messages into a `Step`."""

    def __init__(
        self,
        scheduler: Scheduler,
        starter: RunStarter,
        edits: EditRequests,
        driven: DrivenRuns,
        requests: RunRequests,
    ) -> None:
        self._scheduler = scheduler
        self._starter = starter
        self._edits = edits
        self._driven = driven
        self._requests = requests
        self.interrupting = False  # shutting down: a cancelled try is interrupted, not failed

    async def prepare(self, inbox: list[Message], store: Store, now: float) -> Prepared:
        """The reads this step's decisions need, made before its transaction is built: the
        run starter's (dedup), and the previous runs that tasks depending on the past asked for.
        """
        await self._scheduler.past.read(store)
        return await self._starter.prepare(inbox, store, now)

    def decide(self, inbox: list[Message], prepared: Prepared, now: float) -> Step:
        """Apply every message, settle the runs, and give the free slots out."""
        step = Step(Transitions(now))
        self._starter.runs_created = 0
        for message in inbox:
            if isinstance(message, StarterMessage):
                self._starter.apply(message, prepared, step.tx)
            else:
                self._handle(message, step)
        step.finished = self._settle_runs(step.tx)
        step.started = self._scheduler.allocate(step.tx)
        return step

    def _handle(self, message: EngineMessage, step: Step) -> None:
        if isinstance(message, TryFinished):
            self._try_finished(message, step)
        elif isinstance(message, TimerDue | TriggerEnded):
            key, hook = self._wait_ended(message, step.tx)
            ti = self._scheduler.instance(key)
            if hook and ti is not None:
                step.callbacks.append((ti, hook))
        elif isinstance(message, ClearRequest):
            self._edits.apply(message, step.tx)
        elif isinstance(message, CancelRequest):
            self._cancel(message, step)

    def _cancel(self, message: CancelRequest, step: Step) -> None:
        """A user's cancel, or a run's timeout: the same path, but a timed-out run fails."""
        run = self._scheduler.runs.get(message.run_id)
        if run is None or run.cancelling:
            return
        failure = None
        if message.timed_out_at is not None:
            failure = timed_out(run, message.timed_out_at)
            if failure is None:
                return  # a stale deadline: the run started again since
        step.stopping.extend(self._scheduler.cancel(run, step.tx, failure=failure))

    def _try_finished(self, message: TryFinished, step: Step) -> None:
        if self.interrupting and message.outcome.error == "cancelled":
            reason = "interrupted: the daemon stopped and its grace period ended"
            self._scheduler.interrupt(message.ti, reason, step.tx)
            return
        outcome = self._start_requested_runs(message.ti, message.outcome, step.tx)
        hook = self._scheduler.finish(message.ti, outcome, step.tx)
        if hook:
            step.callbacks.append((message.ti, hook))

    def _start_requested_runs(
        self, ti: TaskInstance, outcome: TaskOutcome, tx: Transitions
    ) -> TaskOutcome:
        """Create the runs the try asked for (`trigger_run`); one that cannot start fails it."""
        if ti.state is not _RUNNING:
            return outcome  # a late outcome of a try already ended: it starts nothing
        for request in outcome.run_requests:
            problem = self._requests.from_task(request, tx.batch)
            if problem is not None:
                return TaskOutcome(status=Outcome.FAILED, error=problem)
        return outcome

    def _wait_ended(
        self, message: TimerDue | TriggerEnded, tx: Transitions
    ) -> tuple[TaskKey, str | None]:
        """A timer came due or a trigger ended: retry, resume, time out or fail."""
        if isinstance(message, TimerDue):
            timer = message.timer
            if timer.kind == PAST_READ:  # it brought this step: `prepare` made the reads
                return timer.key, None
            if timer.kind == "retry":
                self._scheduler.retry(timer.key, tx)
                return timer.key, None
            return timer.key, self._scheduler.time_out(timer.key, timer.due, tx)
        outcome = message.outcome
        if isinstance(outcome, Fired):
            return message.key, self._scheduler.fire(message.key, outcome.event.payload, tx)
        return message.key, self._scheduler.fail_deferral(message.key, outcome.error, tx)

    def _settle_runs(self, tx: Transitions) -> list[ActiveRun]:
        """Admit queued runs and settle readiness until nothing more changes.

        Successes and finished runs may be events for other DAGs (assets, `DagFinished`):
        their runs are created in this same transaction, and admitted too.
        """
        finished: list[ActiveRun] = []
        followed = 0
        while True:
            self._scheduler.admit_runs(tx)
            done = self._scheduler.advance(tx)
            finished.extend(done)
            created = self._starter.runs_created
            followed = self._starter.follow(tx, followed, self._driven.dag_of)
            if not done and self._starter.runs_created == created:
                return finished
