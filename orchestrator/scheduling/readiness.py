"""Readiness: what a task's upstream tasks now let it do (run, skip, fail, expand).

A finished task instance marks its downstream tasks dirty; the scheduler's `advance` hands each
to `Readiness.evaluate`, which applies the task's trigger rule. A task that may run is handed
back to the scheduler (`make_ready`: it waits for a slot, or defers); one that may not is
settled (skipped, upstream failed); a mapped task first expands into one instance per element
of its inputs. Settling lives here too, because settling is what wakes the next tasks, and so
does a branch's choice, which skips the downstream tasks it did not choose.

Like the scheduler it is pure and synchronous: it changes the in-memory run and records what
it did in the `Transitions`. The scheduler owns which runs get visited again (`recheck`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from orchestrator.authoring.references import resolve_refs
from orchestrator.authoring.tasks import Task, map_combinations
from orchestrator.authoring.trigger_rules import TriggerRule, Verdict, evaluate
from orchestrator.errors import UnknownTaskError
from orchestrator.scheduling.active_runs import ActiveRun, TaskInstance, Transitions
from orchestrator.scheduling.past_runs import PastRuns
from orchestrator.state import TaskState
from orchestrator.store.records import TaskInstanceRecord

_VERDICT_STATE = {
    Verdict.SKIP: TaskState.SKIPPED,
    Verdict.UPSTREAM_FAILED: TaskState.UPSTREAM_FAILED,
}
# What `evaluate` compares with for every task, as module constants: in Python 3.11 reading a
# member off its enum class (`Verdict.RUN`) takes the slow path of `EnumType.__getattr__`,
# about 0.1 us each, six times per sensor armed.
_NONE, _SCHEDULED = TaskState.NONE, TaskState.SCHEDULED
_RUN, _WAIT = Verdict.RUN, Verdict.WAIT
_TEARDOWN_RULE = TriggerRule.ALL_DONE_SETUP_SUCCESS


class Readiness:
    """Trigger rules, mapped-task expansion, branch choices and settling, for the scheduler."""

    def __init__(
        self,
        *,
        make_ready: Callable[[TaskInstance, Transitions], None],
        recheck: Callable[[ActiveRun], None],
        past: PastRuns,
    ) -> None:
        self._make_ready = make_ready
        self._recheck = recheck
        self._past = past

    def create_instances(self, run: ActiveRun, tx: Transitions) -> bool:
        """Rows for every task that is not expanded; expanded tasks get theirs when they expand.

        A run queued again by a clear has its rows already: returns True for such a run.
        """
        priorities, instances = run.priorities, run.instances
        records = []
        cleared = False
        for task in run.dag.tasks.values():
            if instances[task.task_id]:
                cleared = True
                continue
            if task.is_mapped:
                continue
            ti = _new_instance(run, task, -1, TaskState.NONE, priorities[task.task_id])
            records.append(_record(ti))
        tx.batch.add_task_instances(records)
        return cleared

    def evaluate(self, run: ActiveRun, task: Task, tx: Transitions) -> None:
        """Apply the task's trigger rule, unless it was decided already (or the run cancels)."""
        if run.cancelling:
            return
        instances = run.instances[task.task_id]
        for ti in instances.values():
            if ti.state is not _NONE:
                return  # decided already
        options = task.options
        rule = options.trigger_rule
        setups: Sequence[TaskState] = ()  # only a teardown's rule reads them: no walk for others
        if rule is _TEARDOWN_RULE:
            setups = run.upstream_states(task, setups_only=True)
        verdict = evaluate(rule, run.upstream_states(task), setups)
        if verdict is _WAIT:
            return
        if verdict is _RUN and options.depends_on_past:
            if self._past.holds(run, task, tx):
                return
        if task.is_mapped:
            self._expand(run, task, verdict, tx)
            return
        ti = instances[-1]
        if verdict is _RUN:
            tx.move(ti, _SCHEDULED)
            self._make_ready(ti, tx)
        else:
            self.settle(ti, _VERDICT_STATE[verdict], tx)

    def settle(self, ti: TaskInstance, state: TaskState, tx: Transitions, **fields: Any) -> None:
        """Move an instance to a finished state and wake its downstream tasks."""
        tx.move(ti, state, ended_at=tx.now, **fields)
        run = ti.run
        if run.task_finished(ti.task_id):
            run.unfinished.discard(ti.task_id)
            run.mark_dirty(ti.task.downstream_task_ids)
            self._recheck(run)  # a leaf has nothing downstream, but the run may be done
            self._past.settled(run, ti.task_id)

    # -- mapped tasks ---------------------------------------------------------------------------

    def _expand(self, run: ActiveRun, task: Task, verdict: Verdict, tx: Transitions) -> None:
        """Turn a mapped task into one instance per element of its (now known) input lists."""
        priority = run.priorities[task.task_id]
        if verdict is not Verdict.RUN and run.instances[task.task_id]:
            for ti in list(run.instances[task.task_id].values()):  # cleared: keep their tries
                self.settle(ti, _VERDICT_STATE[verdict], tx)
            return
        if verdict is not Verdict.RUN:
            self._placeholder(run, task, priority, _VERDICT_STATE[verdict], None, tx)
            return
        try:
            expand = resolve_refs(task.expand_inputs, run.result_view(), run.context())
            combos = map_combinations(task.task_id, expand)
        except (TypeError, KeyError, IndexError) as error:
            message = f"cannot expand: {type(error).__name__}: {error}"
            self._placeholder(run, task, priority, TaskState.FAILED, message, tx)
            return
        if not combos:
            self._placeholder(
                run, task, priority, TaskState.SKIPPED, "expanded over an empty list", tx
            )
            return
        self._expand_into(run, task, combos, priority, tx)

    def _expand_into(
        self,
        run: ActiveRun,
        task: Task,
        combos: list[dict[str, Any]],
        priority: int,
        tx: Transitions,
    ) -> None:
        """One scheduled instance per element; a clear's kept rows are reused by index."""
        instances = run.instances[task.task_id]
        _drop_instances(run, task, [i for i in instances if not 0 <= i < len(combos)], tx)
        records = []
        for index, combo in enumerate(combos):
            ti = instances.get(index)
            if ti is None:
                ti = _new_instance(run, task, index, TaskState.SCHEDULED, priority)
                records.append(_record(ti))
                tx.announce(ti)
            else:  # kept by a clear: its tries go on from where they were
                tx.move(ti, TaskState.SCHEDULED)
            ti.mapped_inputs = combo
            self._make_ready(ti, tx)
        if records:
            tx.batch.add_task_instances(records)

    def _placeholder(
        self,
        run: ActiveRun,
        task: Task,
        priority: int,
        state: TaskState,
        error: str | None,
        tx: Transitions,
    ) -> None:
        """One row (map index -1) recording that a mapped task never expanded, and why."""
        _drop_instances(run, task, list(run.instances[task.task_id]), tx)
        ti = _new_instance(run, task, -1, state, priority)
        ti.error = error
        tx.batch.add_task_instances([_record(ti, ended_at=tx.now, error=error)])
        tx.announce(ti)
        run.unfinished.discard(task.task_id)
        run.mark_dirty(task.downstream_task_ids)
        self._recheck(run)

    # -- branches -------------------------------------------------------------------------------

    def follow_branch(self, ti: TaskInstance, value: Any, tx: Transitions) -> str | None:
        """Skip the direct downstream tasks a branch did not choose; a problem message if bad."""
        chosen = [] if value is None else [value] if isinstance(value, str) else value
        downstream = ti.task.downstream_task_ids
        if not isinstance(chosen, list) or not all(isinstance(c, str) for c in chosen):
            return f"a branch task must return a task id, a list of them, or None; got {value!r}"
        unknown = [c for c in chosen if c not in downstream]
        if unknown:
            return str(
                UnknownTaskError(
                    f"branch returned {', '.join(map(repr, unknown))}, not a direct downstream "
                    f"task of {ti.task_id!r} (choose from: {', '.join(sorted(downstream))})"
                )
            )
        unchosen = downstream - set(chosen)
        if ti.task.skips_whole_downstream:
            dag = ti.run.dag
            unchosen = dag.downstream_of(unchosen) - dag.downstream_of(chosen)
        for task_id in sorted(unchosen):
            self._skip_unchosen(
                ti.run, ti.run.dag.tasks[task_id], f"not chosen by {ti.task_id}", tx
            )
        return None

    def _skip_unchosen(self, run: ActiveRun, task: Task, reason: str, tx: Transitions) -> None:
        instances = run.instances[task.task_id]
        if not instances and task.is_mapped:
            priority = run.priorities[task.task_id]
            self._placeholder(run, task, priority, TaskState.SKIPPED, reason, tx)
        for other in instances.values():
            if other.state is TaskState.NONE:
                self.settle(other, TaskState.SKIPPED, tx, error=reason)


def _new_instance(
    run: ActiveRun, task: Task, map_index: int, state: TaskState, priority: int
) -> TaskInstance:
    ti = TaskInstance(
        run=run,
        task=task,
        map_index=map_index,
        state=state,
        priority=priority,
        max_tries=task.options.retries + 1,
    )
    run.add_instance(ti)
    return ti


def _record(ti: TaskInstance, **fields: Any) -> TaskInstanceRecord:
    return TaskInstanceRecord(
        run_id=ti.run.run_id,
        task_id=ti.task_id,
        map_index=ti.map_index,
        state=ti.state,
        max_tries=ti.max_tries,
        pool=ti.task.options.pool,
        priority=ti.priority,
        **fields,
    )


def _drop_instances(run: ActiveRun, task: Task, indexes: list[int], tx: Transitions) -> None:
    """Remove the rows of a cleared expanded task that its new expansion does not have.

    Clearing keeps an expanded task's rows so that each element's tries go on; when the
    upstream list is now shorter (or the task no longer expands), the extra elements no
    longer exist in this run, and go with their tries.
    """
    if indexes:
        tx.batch.delete_task_instances([(run.run_id, task.task_id, i) for i in indexes])
        instances = run.instances[task.task_id]
        for index in indexes:
            run.remove_instance(instances[index])
