"""Picking up unfinished runs after a restart: nothing waiting is lost, nothing runs twice.

On open, the engine reads every queued or running run of a DAG it has loaded and rebuilds its
in-memory picture (`rebuild_run`); then the scheduler settles each task instance that was caught
mid-flight (`RecoveryDecisions.recover`), all in one transaction:

- `deferred`: its trigger is rebuilt from the stored row and hosted again; its timeout keeps
  its original deadline (a deadline that passed while down fires at once). A trigger row that
  cannot be rebuilt (its class is gone, its arguments or cursor cannot be read) fails the try
  with the reason; the rest of the run goes on.

A run whose own stored values cannot be read (its conf, a result, how a deferred task
resumes) cannot be rebuilt: `rebuild_run` raises `DamagedRowError`, and `startup` fails that
run alone with the reason.
- `running` / `queued`: the daemon died while the try ran (`startup` has made sure that no
  process of the try still runs). The try ends failed ("the daemon stopped while this try
  ran") and the instance runs again without using a retry, since the task did nothing wrong:
  at-least-once execution. After `max_interrupted_tries` such tries, though, the task is the
  likely cause (it kills the daemon, or the machine), and the try counts as a failure.
- `scheduled`: ready again (a deferrable sensor defers again).
- `up_for_retry`: its backoff timer is set again for the stored moment.
- `none`: waits for its upstream tasks as usual. A run cleared while no daemon ran is queued
  with some instances finished and the cleared ones `none`: once admitted, only those run.

A daemon that shuts down first lets running tries finish for a grace period, then kills the
rest: `RecoveryDecisions.interrupt` records those as failed tries and schedules the task
instances again without using up a try, since the task did nothing wrong.
"""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Any

from orchestrator.authoring.dag import DAG
from orchestrator.authoring.references import resolve_refs
from orchestrator.authoring.tasks import map_combinations
from orchestrator.errors import DamagedRowError, ResultError, TriggerLoadError
from orchestrator.execution.jobs import Outcome, TaskOutcome
from orchestrator.execution.results import decode_result
from orchestrator.scheduling.active_runs import ActiveRun, DagPlan, TaskInstance, Transitions
from orchestrator.scheduling.deferred import Arming, Timer
from orchestrator.state import TaskState
from orchestrator.store.records import RunRecord, TaskInstanceRecord, TriggerRecord
from triggers.base import load_trigger

TaskKey = tuple[str, str, int]
STOPPED_WHILE_RUNNING = "interrupted: the daemon stopped while this try ran"


def rebuild_run(
    record: RunRecord,
    dag: DAG,
    plan: DagPlan,
    instances: list[TaskInstanceRecord],
    results: dict[tuple[str, int], str],
) -> ActiveRun:
    """The in-memory run as it was when the store last committed it.

    `DamagedRowError` if part of it cannot be read: guessing a conf or a result would run
    tasks on made-up input.
    """
    _check_readable(record, instances)
    run = ActiveRun(record, dag, plan)
    for (task_id, map_index), text in results.items():
        if task_id in dag.tasks:
            run.results.setdefault(task_id, {})[map_index] = _stored_result(task_id, text)
    for row in instances:
        task = dag.tasks.get(row.task_id)
        if task is not None:
            run.add_instance(_instance(run, task, row))
    _restore_mapped_inputs(run)
    for task_id in list(run.unfinished):
        if run.task_finished(task_id):
            run.unfinished.discard(task_id)
    run.mark_dirty([task_id for task_id in run.unfinished if not run.instances[task_id]])
    run.mark_dirty(
        [task_id for task_id, tis in run.instances.items() if _waiting_for_upstream(tis)]
    )
    return run


def _check_readable(record: RunRecord, instances: list[TaskInstanceRecord]) -> None:
    if record.damaged is not None:
        raise DamagedRowError(f"run {record.run_id}: {record.damaged}")
    for row in instances:
        if row.damaged is not None and not row.state.finished:
            raise DamagedRowError(f"task instance {row.task_id}[{row.map_index}]: {row.damaged}")


def _stored_result(task_id: str, text: str) -> Any:
    try:
        return decode_result(text)
    except ResultError as error:
        raise DamagedRowError(f"the result of task {task_id}: {error}") from None


def _instance(run: ActiveRun, task: Any, row: TaskInstanceRecord) -> TaskInstance:
    return TaskInstance(
        run=run,
        task=task,
        map_index=row.map_index,
        state=row.state,
        priority=row.priority,
        try_number=row.try_number,
        max_tries=row.max_tries,
        error=row.error,
        next_retry_at=row.next_retry_at,
        next_call=None if row.next_call is None else json.loads(row.next_call),
        interrupted_tries=row.interrupted_tries,
    )


def _waiting_for_upstream(instances: dict[int, TaskInstance]) -> bool:
    return any(ti.state is TaskState.NONE for ti in instances.values())


def _restore_mapped_inputs(run: ActiveRun) -> None:
    """An expanded instance's own inputs are recomputed from its (stored) upstream results.

    Only instances that may still run need them. A cleared expanded task (every instance
    `none`) gets its inputs when it expands again, from upstream results that may not exist
    yet: its upstream tasks may have been cleared too.
    """
    for task_id, instances in run.instances.items():
        task = run.dag.tasks[task_id]
        if not task.is_mapped or not any(_may_run(index, ti) for index, ti in instances.items()):
            continue
        expand = resolve_refs(task.expand_inputs, run.result_view(), run.context())
        combos = map_combinations(task_id, expand)
        for index, ti in instances.items():
            if 0 <= index < len(combos):
                ti.mapped_inputs = combos[index]


def _may_run(index: int, ti: TaskInstance) -> bool:
    """An expanded element that is scheduled, running, deferred or up for retry."""
    return index >= 0 and ti.state is not TaskState.NONE and not ti.state.finished


def _ordinal(number: int) -> str:
    if 10 <= number % 100 <= 20:
        return f"{number}th"
    return f"{number}{ {1: 'st', 2: 'nd', 3: 'rd'}.get(number % 10, 'th') }"


class RecoveryDecisions:
    """The restart half of `Scheduler` (a mixin: it uses the scheduler's own helpers)."""

    if TYPE_CHECKING:
        timers: list[Timer]
        armings: list[Arming]

        def add_run(self, run: ActiveRun) -> None: ...
        def finish(self, ti: TaskInstance, outcome: TaskOutcome, tx: Transitions) -> str | None: ...
        def _recheck(self, run: ActiveRun) -> None: ...
        def _take_slot(self, ti: TaskInstance, sign: int) -> None: ...

        max_interrupted_tries: int
        begun_tries: frozenset[str]

        def _end_try(
            self, ti: TaskInstance, state: TaskState, error: str | None, tx: Transitions
        ) -> None: ...
        def _fail(self, ti: TaskInstance, error: str, tx: Transitions, **fields: Any) -> str: ...
        def _make_ready(self, ti: TaskInstance, tx: Transitions) -> None: ...
        def _push_ready(self, ti: TaskInstance) -> None: ...
        def begun_log_path(self, ti: TaskInstance) -> str: ...

    def recover(
        self, run: ActiveRun, triggers: dict[TaskKey, TriggerRecord], tx: Transitions
    ) -> None:
        """Adopt a rebuilt run and settle every task instance caught mid-flight."""
        self.add_run(run)
        for instances in run.instances.values():
            for ti in instances.values():
                ti.log_path = self.begun_log_path(ti) if ti.try_number else ""
                self._recover_instance(ti, triggers.get(ti.key), tx)
        self._recheck(run)  # it may have nothing left to do but finish

    def _recover_instance(
        self, ti: TaskInstance, trigger: TriggerRecord | None, tx: Transitions
    ) -> None:
        state = ti.state
        if state is TaskState.DEFERRED:
            self._rearm(ti, trigger, tx)
        elif state in (TaskState.RUNNING, TaskState.QUEUED):
            if ti.resuming:  # the resume had not finished: it runs again, with the event
                tx.move(ti, TaskState.SCHEDULED)
                self._push_ready(ti)
                return
            self._recover_interrupted(ti, tx)
        elif state is TaskState.SCHEDULED:
            self._make_ready(ti, tx) if not ti.resuming else self._push_ready(ti)
        elif state is TaskState.UP_FOR_RETRY:
            self.timers.append(Timer(ti.next_retry_at or tx.now, ti.key, "retry"))

    def _recover_interrupted(self, ti: TaskInstance, tx: Transitions) -> None:
        """A try the daemon's death cut short runs again for free, up to the cap.

        Only a try whose code had begun counts towards the cap (its mark in `begun_tries`, or
        its log): one whose worker had not got the job cannot be what killed the daemon, and
        a daemon killed again and again right after it starts must not fail the tries it had
        just sent out.
        """
        if not ti.log_path or ti.log_path in self.begun_tries or os.path.exists(ti.log_path):
            ti.interrupted_tries += 1
        fields = {"interrupted_tries": ti.interrupted_tries}
        if ti.interrupted_tries < self.max_interrupted_tries:
            self._requeue(ti, STOPPED_WHILE_RUNNING, tx, fields)
            return
        reason = (
            f"{STOPPED_WHILE_RUNNING}, for the {_ordinal(ti.interrupted_tries)} time "
            f"(max_interrupted_tries is {self.max_interrupted_tries}): the task itself may be "
            "what stops the daemon, so this try counts as failed"
        )
        self._fail(ti, reason, tx, **fields)

    def _rearm(self, ti: TaskInstance, row: TriggerRecord | None, tx: Transitions) -> None:
        if row is None:
            self._fail(ti, "its trigger was not found in the store after a restart", tx)
            return
        if row.damaged is not None:
            self._fail(ti, f"its stored trigger cannot be read: {row.damaged}", tx)
            return
        try:
            trigger = load_trigger(row.classpath, row.kwargs)
        except TriggerLoadError as error:
            self._fail(ti, f"TriggerLoadError: {error}", tx)
            return
        ti.timeout_at = row.timeout_at
        self.armings.append(Arming(ti.key, trigger, row.cursor))
        if row.timeout_at is not None:
            self.timers.append(Timer(row.timeout_at, ti.key, "timeout"))

    def interrupt(self, ti: TaskInstance, reason: str, tx: Transitions) -> None:
        """A running try was killed at shutdown: it failed, but the task instance runs again.

        The try ends `failed` with `reason` and the instance goes back to `scheduled` (the run
        goes on), its slot and pool freed. The kill was the daemon's doing, not the task's, so
        the try is given back: `max_tries` grows by one. A resume keeps its event and runs
        again in the same try, so it needs no extra one. In a run being cancelled the instance
        is cancelled instead. Anything not running (it ended meanwhile) is left alone.
        """
        if ti.state is not TaskState.RUNNING:
            return
        if ti.run.cancelling:
            self.finish(ti, TaskOutcome(status=Outcome.FAILED, error=reason), tx)
            return
        self._take_slot(ti, -1)
        self._requeue(ti, reason, tx, {})

    def _requeue(
        self, ti: TaskInstance, reason: str, tx: Transitions, fields: dict[str, Any]
    ) -> None:
        """End the try as failed with `reason` and schedule the instance again, try given back."""
        self._end_try(ti, TaskState.FAILED, reason, tx)
        fields = {**fields, "error": reason}
        if not ti.resuming:
            ti.max_tries += 1
            fields["max_tries"] = ti.max_tries
        tx.move(ti, TaskState.SCHEDULED, **fields)
        self._push_ready(ti)
