"""Scheduling decisions: which task instances are ready, which get a slot, what happens next.

Pure and synchronous: every method mutates the in-memory runs and records what it did in a
`Transitions` (write batch + change feed). The engine commits that batch, then acts on it
(dispatches the instances that got a slot). Keeping I/O out of here makes each decision a
plain function call that tests can drive step by step.

`Scheduler` is the one object the engine drives. It admits runs, visits the runs that changed,
opens tries and decides what a try's outcome means (success, retry, failure, cancel); it hands
trigger rules, expansion and branches to `readiness`, the ready heap and slot counts to
`slots`, and takes deferral and restart decisions from `deferred` and `recovery`.
"""

from __future__ import annotations

import os
import random
from collections import Counter
from collections.abc import Mapping
from typing import Any

from orchestrator.execution.jobs import Outcome, TaskOutcome
from orchestrator.execution.results import decode_result
from orchestrator.scheduling.active_runs import ActiveRun, RunQueue, TaskInstance, Transitions
from orchestrator.scheduling.deferred import Arming, DeferralDecisions, Timer
from orchestrator.scheduling.past_runs import PastRuns
from orchestrator.scheduling.readiness import Readiness
from orchestrator.scheduling.recovery import RecoveryDecisions
from orchestrator.scheduling.run_timeouts import timeout_timer
from orchestrator.scheduling.slots import SlotLedger
from orchestrator.state import RunState, TaskState
from orchestrator.store.records import TryRecord

_UNFINISHED_FOR_CANCEL = (
    TaskState.NONE,
    TaskState.SCHEDULED,
    TaskState.QUEUED,
    TaskState.UP_FOR_RETRY,
    TaskState.DEFERRED,
)
# Read for every run and try, as module constants: in Python 3.11 reading a member off its
# enum class (`RunState.QUEUED`) takes the slow path of `EnumType.__getattr__`, about 0.1 us.
_QUEUED_RUN, _RUNNING_RUN, _RUN_SUCCESS = RunState.QUEUED, RunState.RUNNING, RunState.SUCCESS
_QUEUED, _RUNNING, _SUCCESS = TaskState.QUEUED, TaskState.RUNNING, TaskState.SUCCESS
_DONE = Outcome.SUCCESS
_FAILED_LEAF = (TaskState.FAILED, TaskState.UPSTREAM_FAILED)


class Scheduler(DeferralDecisions, RecoveryDecisions):
    """Readiness, slots and pools, retries, deferrals, run admission and run completion."""

    def __init__(
        self,
        *,
        slots: int,
        pools: Mapping[str, int],
        log_dir: str,
        rng: random.Random | None = None,
        result_max_bytes: int = 65536,
        max_interrupted_tries: int = 3,
    ) -> None:
        self.result_max_bytes = result_max_bytes
        self.max_interrupted_tries = max_interrupted_tries
        self.begun_tries: frozenset[str] = frozenset()  # recovery: logs of begun tries
        self.log_dir = log_dir
        self.rng = rng or random.Random()
        self.runs: dict[str, ActiveRun] = {}
        self._slots = SlotLedger(slots=slots, pools=pools)
        #: Tasks that depend on their past: what their runs' previous runs did (read when needed).
        self.past = PastRuns(self.runs, lambda timer: self.timers.append(timer))
        self._readiness = Readiness(
            make_ready=self._make_ready, recheck=self._recheck, past=self.past
        )
        self._queue = RunQueue()
        #: Runs with something to settle (dirty tasks, or one that may let the run finish).
        self._dirty_runs: dict[str, ActiveRun] = {}
        #: Shutting down: running tasks finish, no queued run is admitted, no task starts.
        self.draining = False
        #: Timers started since the engine last collected them (it owns the clock).
        self.timers: list[Timer] = []
        #: Triggers to host since the engine last collected them (after the commit).
        self.armings: list[Arming] = []

    # -- slots and pools ------------------------------------------------------------------------

    @property
    def slots(self) -> int:
        """How many task instances may run at once; a new value holds from the next `allocate`."""
        return self._slots.slots

    @slots.setter
    def slots(self, slots: int) -> None:
        self._slots.slots = slots

    @property
    def pools(self) -> dict[str, int]:
        return self._slots.pools

    @property
    def pool_used(self) -> Counter[str]:
        return self._slots.pool_used

    @property
    def slots_used(self) -> int:
        return self._slots.used

    # -- runs -----------------------------------------------------------------------------------

    @property
    def paused(self) -> set[str]:
        """DAG ids whose queued runs are not admitted (their running runs go on).

        Change it with `set_paused` (or by assigning a whole set): a DAG removed from the set
        by hand is admitted only when something else changes for it.
        """
        return self._queue.paused

    @paused.setter
    def paused(self, dag_ids: set[str]) -> None:
        for dag_id in self._queue.paused - dag_ids:
            self._queue.set_paused(dag_id, False)
        for dag_id in dag_ids:
            self._queue.set_paused(dag_id, True)

    def set_paused(self, dag_id: str, paused: bool) -> None:
        """Pause or unpause a DAG; once unpaused, the next `admit_runs` admits its queued runs."""
        self._queue.set_paused(dag_id, paused)

    def running_runs(self, dag_id: str) -> int:
        """How many runs of the DAG are running (what `max_active_runs` limits)."""
        return self._queue.running(dag_id)

    def queued_runs(self, dag_id: str) -> int:
        """How many runs of the DAG wait for `max_active_runs` (or for an unpause)."""
        return self._queue.queued(dag_id)

    def add_run(self, run: ActiveRun) -> None:
        """Drive a queued run (or a running one, picked up after a restart)."""
        self.runs[run.run_id] = run
        run.on_dirty = self._recheck
        if run.state is _QUEUED_RUN:
            self._queue.queue(run)
        elif run.state is _RUNNING_RUN:
            self._queue.count_running(run)
            self._set_timeout(run)

    def admit_runs(self, tx: Transitions) -> None:
        """Start queued runs while their DAG is under `max_active_runs`, oldest first."""
        if self.draining:
            return
        for run in self._queue.admit():
            tx.move_run(run, _RUNNING_RUN)
            run.started_at = tx.now
            self._set_timeout(run)
            cleared = self._readiness.create_instances(run, tx)
            # A cleared run (queued again) goes on where its cleared tasks are, not at its roots.
            run.mark_dirty(run.unfinished if cleared else run.dag.roots)
            self._recheck(run)  # a DAG without tasks finishes at once

    # -- readiness ------------------------------------------------------------------------------

    def advance(self, tx: Transitions) -> list[ActiveRun]:
        """Settle every dirty task of every running run; return the runs that finished.

        Only runs that asked (`_recheck`) are visited, so a step costs what changed, not the
        number of active runs.
        """
        finished: list[ActiveRun] = []
        while self._dirty_runs:
            dirty, self._dirty_runs = self._dirty_runs, {}
            finished.extend(run for run in dirty.values() if self._advance_run(run, tx))
        return finished

    def _advance_run(self, run: ActiveRun, tx: Transitions) -> bool:
        """Settle the run's dirty tasks; finish it if nothing is left. True if it finished."""
        if run.state is not _RUNNING_RUN or self.runs.get(run.run_id) is not run:
            return False  # queued (admission marks it again) or already gone
        evaluate, tasks, pop_dirty = self._readiness.evaluate, run.dag.tasks, run.pop_dirty
        while (task_id := pop_dirty()) is not None:  # a run's first visit: all of its roots
            evaluate(run, tasks[task_id], tx)
        self._dirty_runs.pop(run.run_id, None)  # what it marked itself is settled already
        if run.unfinished or run.running:
            return False
        self._finish_run(run, tx)
        return True

    def _recheck(self, run: ActiveRun) -> None:
        """Visit the run in the next `advance`: it has dirty tasks, or may be able to finish."""
        self._dirty_runs[run.run_id] = run

    def _settle(self, ti: TaskInstance, state: TaskState, tx: Transitions, **fields: Any) -> None:
        """Move an instance to a finished state and wake its downstream tasks."""
        self._readiness.settle(ti, state, tx, **fields)

    # -- slots ----------------------------------------------------------------------------------

    def _make_ready(self, ti: TaskInstance, tx: Transitions) -> None:
        """A scheduled instance waits for a slot, or (a deferrable sensor) defers at once."""
        if ti.task.defers_at_start and ti.next_call is None:
            self._defer_at_start(ti, tx)
        else:
            self._push_ready(ti)

    def _push_ready(self, ti: TaskInstance) -> None:
        self._slots.push(ti)

    def allocate(self, tx: Transitions) -> list[TaskInstance]:
        """Give free slots to scheduled instances, highest priority first, within pool limits."""
        if self.draining:
            return []
        return self._slots.claim(self._instance, lambda ti: self._start(ti, tx))

    def instance(self, key: tuple[str, str, int]) -> TaskInstance | None:
        """The task instance with this key, if its run is active."""
        return self._instance(*key)

    def _instance(self, run_id: str, task_id: str, map_index: int) -> TaskInstance | None:
        run = self.runs.get(run_id)
        return None if run is None else run.instances[task_id].get(map_index)

    def _start(self, ti: TaskInstance, tx: Transitions) -> None:
        """Record the start of a try that got a slot (a resume goes on in its deferred try)."""
        if ti.resuming:
            ti.log_path = self.begun_log_path(ti)
            tx.move(ti, TaskState.QUEUED, queued_at=tx.now)
            tx.move(ti, TaskState.RUNNING)
            tx.batch.reopen_try(ti.key, ti.try_number, at=tx.now)
            return
        self._open_try(ti, _RUNNING, tx)

    def _open_try(self, ti: TaskInstance, state: TaskState, tx: Transitions) -> None:
        """A new try: queued, then `state` (running on a slot, or deferred for a sensor)."""
        self._begin_try(ti)
        self._record_try(ti, state, tx)

    def _record_try(self, ti: TaskInstance, state: TaskState, tx: Transitions) -> None:
        """Record a begun try (`_begin_try`): the instance moves into `state` as it opens."""
        if state is _RUNNING:
            tx.move(ti, _QUEUED, queued_at=tx.now)
        tx.move(ti, state, started_at=tx.now, try_number=ti.try_number, error=None)
        tx.batch.start_try(self._try_record(ti, state, tx.now))

    def _begin_try(self, ti: TaskInstance) -> None:
        """Number the instance's next try and say where it logs (nothing is recorded yet)."""
        ti.try_number += 1
        ti.error = None
        ti.log_path = self.log_path(ti)

    @staticmethod
    def _try_record(ti: TaskInstance, state: TaskState, now: float) -> TryRecord:
        return TryRecord(
            run_id=ti.run.run_id,
            task_id=ti.task_id,
            map_index=ti.map_index,
            try_number=ti.try_number,
            state=state,
            started_at=now,
            log_path=ti.log_path,
        )

    def _take_slot(self, ti: TaskInstance, sign: int) -> None:
        self._slots.take(ti, sign)
        if sign < 0:
            self._recheck(ti.run)  # its last running task may have been all that was left

    def log_path(self, ti: TaskInstance) -> str:
        """Where a new try logs: `DAG/RUN/TASK.try-N.log`, beside the other tries of its run.

        No folder per task: its mkdir cost more than the try's own file, about doubling the
        system CPU of a no-op in-process try (`bench/overhead_profile.py --logs`).
        """
        return f"{self._log_stem(ti)}.try-{ti.try_number}.log"

    def begun_log_path(self, ti: TaskInstance) -> str:
        """The log of a try begun before (resumed or recovered), where its version put it.

        A try begun before logs went side by side has it in a task folder: `TASK/try-N.log`.
        """
        older = f"{self._log_stem(ti)}/try-{ti.try_number}.log"
        return older if os.path.exists(older) else self.log_path(ti)

    def _log_stem(self, ti: TaskInstance) -> str:
        """`DAG/RUN/TASK` (`TASK.INDEX` for an expanded task's element), under the logs folder."""
        name = ti.task_id if ti.map_index < 0 else f"{ti.task_id}.{ti.map_index}"
        return f"{self.log_dir}/{ti.run.dag.dag_id}/{ti.run.run_id}/{name}"

    # -- outcomes -------------------------------------------------------------------------------

    def finish(self, ti: TaskInstance, outcome: TaskOutcome, tx: Transitions) -> str | None:
        """Record how a try ended. Returns the callback to call: success, failure or retry.

        A try the scheduler already ended (`interrupt`) is not running any more: its late
        outcome changes nothing.
        """
        if ti.state is not _RUNNING:
            return None
        self._take_slot(ti, -1)
        if ti.run.cancelling and outcome.status is not _DONE:
            reason = ti.run.failure or "cancelled"
            self._end_try(ti, TaskState.CANCELLED, reason, tx)
            self._settle(ti, TaskState.CANCELLED, tx, error=reason)
            return None
        if outcome.status is _DONE:
            return self._succeed(ti, outcome.result_json or "null", tx)
        if outcome.status is Outcome.SKIPPED:
            self._end_try(ti, TaskState.SKIPPED, outcome.error, tx)
            self._settle(ti, TaskState.SKIPPED, tx, error=outcome.error)
            return None
        if outcome.status is Outcome.DEFERRED:
            return self._defer_stored(ti, outcome.deferral_json or "", tx)
        final = outcome.status is Outcome.FAILED_FINAL
        return self._fail(ti, outcome.error or "failed", tx, retry=not final)

    def _succeed(self, ti: TaskInstance, result_json: str, tx: Transitions) -> str | None:
        value = decode_result(result_json)
        if ti.task.is_branch:
            problem = self._readiness.follow_branch(ti, value, tx)
            if problem:
                return self._fail(ti, problem, tx)
        self._end_try(ti, _SUCCESS, None, tx)
        tx.batch.save_result(ti.key, result_json)
        ti.run.results.setdefault(ti.task_id, {})[ti.map_index] = value
        self._settle(ti, _SUCCESS, tx, error=None)
        return "on_success"

    def _fail(
        self, ti: TaskInstance, error: str, tx: Transitions, *, retry: bool = True, **fields: Any
    ) -> str:
        """The try failed: retry after the backoff if tries remain, else the instance fails."""
        if retry and ti.try_number < ti.max_tries:
            delay = ti.task.options.retry_policy.delay_after(ti.try_number, self.rng)
            self._end_try(ti, TaskState.UP_FOR_RETRY, error, tx)
            retry_at = tx.now + delay
            tx.move(ti, TaskState.UP_FOR_RETRY, next_retry_at=retry_at, error=error, **fields)
            self.timers.append(Timer(tx.now + delay, ti.key, "retry"))
            return "on_retry"
        self._end_try(ti, TaskState.FAILED, error, tx)
        self._settle(ti, TaskState.FAILED, tx, error=error, **fields)
        return "on_failure"

    def _end_try(
        self, ti: TaskInstance, state: TaskState, error: str | None, tx: Transitions
    ) -> None:
        tx.batch.end_try(ti.key, ti.try_number, state, at=tx.now, error=error)

    def retry(self, key: tuple[str, str, int], tx: Transitions) -> None:
        """A retry backoff came due: the instance is scheduled again."""
        ti = self._instance(*key)
        if ti is not None and ti.state is TaskState.UP_FOR_RETRY:
            tx.move(ti, TaskState.SCHEDULED, next_retry_at=None)
            self._make_ready(ti, tx)

    # -- cancel and completion ------------------------------------------------------------------

    def cancel(
        self, run: ActiveRun, tx: Transitions, *, failure: str | None = None
    ) -> list[TaskInstance]:
        """Cancel a run: unfinished instances are marked, running ones returned to be killed.

        With a `failure` (its timeout), that is each instance's error and the run ends failed.
        """
        run.cancelling, run.failure = True, failure
        reason = failure or "cancelled"
        if run.state is RunState.QUEUED:
            for ti in run.each_instance():  # a cleared run, queued again, has some
                if ti.state is TaskState.NONE:
                    tx.move(ti, TaskState.CANCELLED, ended_at=tx.now, error="cancelled")
            tx.move_run(run, RunState.CANCELLED)
            del self.runs[run.run_id]
            self.past.ended(run)
            return []
        running = []
        for instances in run.instances.values():
            for ti in instances.values():
                if ti.state is TaskState.DEFERRED:
                    self._end_try(ti, TaskState.CANCELLED, reason, tx)
                if ti.state in _UNFINISHED_FOR_CANCEL:
                    self._settle(ti, TaskState.CANCELLED, tx, error=reason)
                elif ti.state is TaskState.RUNNING:
                    running.append(ti)
        run.unfinished.clear()
        self._recheck(run)  # with nothing running, it is cancelled in this very step
        return running

    def _set_timeout(self, run: ActiveRun) -> None:
        timer = timeout_timer(run)
        if timer is not None:
            self.timers.append(timer)

    def _finish_run(self, run: ActiveRun, tx: Transitions) -> None:
        if run.cancelling:
            state = RunState.FAILED if run.failure else RunState.CANCELLED
        elif any(s in _FAILED_LEAF for s in run.leaf_states()):
            state = RunState.FAILED
        else:
            state = _RUN_SUCCESS
        tx.move_run(run, state)
        del self.runs[run.run_id]
        self._queue.ended(run)
        self.past.ended(run)
