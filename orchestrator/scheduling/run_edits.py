"""What a user does to a run by hand: cancel it, or clear task instances so that they run again.

Clearing is Airflow's "clear". The named task instances (every element of an expanded task)
and, by default, every task downstream of them go back to `none`, with the setups they need
and those setups' teardowns (`clear_scope`): their error and result are gone (a downstream
task must not read a stale result), their try history stays (the next try number goes on
from the last), and each gets its full retries again. A finished run goes back
to `queued` and is admitted under `max_active_runs` like any other; in a run still going,
only those instances are reset. An instance that is in flight (scheduled, running, deferred,
up for retry) is not cleared: the run is cancelled or finishes first.

An expanded task keeps its rows when cleared, so each element's tries go on; it expands again
from its upstream result when it is ready, reusing its rows by map index. Elements the new
list no longer has are removed with their tries; a placeholder row (a task that never
expanded) is removed at once.

The engine applies these to the runs it drives (`Engine.cancel`, `Engine.clear`); with no
daemon running, the CLI applies them to the store alone (`cancel_stored_run`,
`clear_stored_run`) and the next daemon picks the run up with the unfinished runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from orchestrator.authoring.dag import DAG
from orchestrator.changes import Change, RunChanged, TaskChanged
from orchestrator.errors import RunError, RunNotFoundError
from orchestrator.loading.dagbag import DagBag
from orchestrator.scheduling.active_runs import ActiveRun, DagPlan, TaskInstance, Transitions
from orchestrator.scheduling.clear_scope import cleared_task_ids
from orchestrator.scheduling.recovery import rebuild_run
from orchestrator.state import RunState, TaskState
from orchestrator.store.base import Store, TaskKey, WriteBatch
from orchestrator.store.records import RunRecord, TaskInstanceRecord

CANCELLED = "cancelled"
#: In flight: a clear would race the try (or the trigger) that holds it.
_IN_FLIGHT = frozenset(
    {
        TaskState.SCHEDULED,
        TaskState.QUEUED,
        TaskState.RUNNING,
        TaskState.DEFERRED,
        TaskState.UP_FOR_RETRY,
    }
)
_TRY_OPEN = (TaskState.RUNNING, TaskState.DEFERRED)  # states whose try has not ended

# -- clear ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Clearing:
    """What one clear resets, checked: build it with `clear_targets`."""

    instances: list[TaskInstance]  # finished instances, in topological order
    # Tasks of a finished run that never got an instance (the run was cancelled before they
    # were reached, or before it started): queuing the run again runs them too.
    unstarted: list[str]


def clear_targets(run: ActiveRun, task_ids: Sequence[str], *, downstream: bool) -> Clearing:
    """What clearing `task_ids` (and what is downstream) resets; `RunError` if it may not."""
    check_task_ids(run.dag, run.run_id, task_ids)
    if run.cancelling:
        raise RunError(
            f"run {run.run_id!r} is being cancelled; wait until it is cancelled, then clear it"
        )
    selected = cleared_task_ids(run.dag, task_ids, downstream=downstream)
    ordered = sorted(selected, key=run.order.__getitem__)
    instances = [ti for task_id in ordered for ti in run.instances[task_id].values()]
    _refuse_in_flight(run, instances)
    finished = [ti for ti in instances if ti.state.finished]
    unstarted = [t for t in ordered if not run.instances[t]] if run.state.finished else []
    return Clearing(finished, unstarted)


def _refuse_in_flight(run: ActiveRun, instances: list[TaskInstance]) -> None:
    busy = [ti for ti in instances if ti.state in _IN_FLIGHT]
    if busy:
        listed = ", ".join(f"{_label(ti)} is {ti.state}" for ti in busy)
        raise RunError(
            f"cannot clear in run {run.run_id!r}: {listed}. "
            "Cancel the run or wait until those tasks finish, then clear again"
        )


def check_task_ids(dag: DAG, run_id: str, task_ids: Sequence[str]) -> None:
    """Raise `RunError` naming the DAG's tasks unless every id is one of them."""
    if not task_ids:
        raise RunError(f"name at least one task of run {run_id!r} to clear")
    unknown = [task_id for task_id in task_ids if task_id not in dag.tasks]
    if unknown:
        raise RunError(
            f"DAG {dag.dag_id!r} (run {run_id!r}) has no task "
            f"{', '.join(map(repr, unknown))}; its tasks: {', '.join(sorted(dag.tasks))}"
        )


def clear_instances(run: ActiveRun, clearing: Clearing, tx: Transitions) -> list[TaskKey]:
    """Reset what `clearing` names so it runs again; queue the run again if it finished.

    Returns the keys cleared; a task that never got an instance counts with map index -1.
    """
    for ti in clearing.instances:
        if ti.map_index < 0 and ti.task.is_mapped:
            _drop_placeholder(ti, tx)
        else:
            _reset(ti, tx)
        _forget_result(run, ti)
    keys = [ti.key for ti in clearing.instances]
    if keys:
        tx.batch.delete_results(keys)
    task_ids = {ti.task_id for ti in clearing.instances} | set(clearing.unstarted)
    run.unfinished.update(task_ids)
    run.mark_dirty(task_ids)
    if task_ids and run.state.finished:
        tx.move_run(run, RunState.QUEUED)
    return keys + [(run.run_id, task_id, -1) for task_id in clearing.unstarted]


def _reset(ti: TaskInstance, tx: Transitions) -> None:
    """Back to `none`, with its full retries again after the tries it already had."""
    ti.max_tries = ti.try_number + ti.task.options.retries + 1
    ti.next_retry_at = ti.timeout_at = None
    ti.log_path = ""
    tx.move(
        ti,
        TaskState.NONE,
        error=None,
        max_tries=ti.max_tries,
        queued_at=None,
        started_at=None,
        ended_at=None,
        next_retry_at=None,
    )


def _drop_placeholder(ti: TaskInstance, tx: Transitions) -> None:
    """A task that never expanded (it has no tries) loses its row and expands when ready."""
    tx.batch.delete_task_instances([ti.key])
    ti.run.remove_instance(ti)
    ti.state, ti.error = TaskState.NONE, None
    tx.announce(ti)


def _forget_result(run: ActiveRun, ti: TaskInstance) -> None:
    results = run.results.get(ti.task_id)
    if results is not None:
        results.pop(ti.map_index, None)
        if not results:
            del run.results[ti.task_id]  # a missing result, not an empty list


def _label(ti: TaskInstance) -> str:
    return ti.task_id if ti.map_index < 0 else f"{ti.task_id}[{ti.map_index}]"


async def load_run(store: Store, record: RunRecord, dag: DAG, plan: DagPlan) -> ActiveRun:
    """The run as the store last committed it, to be edited in memory."""
    instances = await store.list_task_instances(record.run_id)
    results = await store.get_results(record.run_id)
    return rebuild_run(record, dag, plan, instances, results)


async def clear_stored_run(
    store: Store,
    dagbag: DagBag,
    record: RunRecord,
    task_ids: Sequence[str],
    *,
    downstream: bool,
    now: float,
) -> tuple[list[TaskKey], list[Change]]:
    """Clear task instances in the store alone (no daemon runs): the next daemon runs them.

    Returns the keys cleared and the changes made, for an engine's change feed.
    """
    dag = dag_of_run(dagbag, record)
    run = await load_run(store, record, dag, DagPlan.of(dag))
    tx = Transitions(now)
    keys = clear_instances(run, clear_targets(run, task_ids, downstream=downstream), tx)
    await store.commit(tx.batch)
    return keys, tx.changes


def dag_of_run(dagbag: DagBag, record: RunRecord) -> DAG:
    """The run's DAG, or a `RunError`: a clear needs its tasks and their dependencies."""
    dag = dagbag.dags.get(record.dag_id)
    if dag is None:
        raise RunError(
            f"run {record.run_id!r} is a run of DAG {record.dag_id!r}, which is not loaded "
            f"from {dagbag.folder}; fix or restore its file (`orchestrator dags list` shows "
            "import errors), then clear again"
        )
    return dag


async def stored_run(store: Store, run_id: str) -> RunRecord:
    """The run `run_id`, or `RunNotFoundError`."""
    record = await store.get_run(run_id)
    if record is None:
        raise RunNotFoundError(f"there is no run with id {run_id!r}", run_id=run_id)
    return record


# -- cancel ---------------------------------------------------------------------------------------


async def cancel_stored_run(store: Store, record: RunRecord, *, now: float) -> list[Change]:
    """Cancel an unfinished run that no engine drives, in the store alone, in one batch.

    It needs no DAG (its DAG may be the reason nobody drives it): every unfinished task
    instance is cancelled, a try still open (a process that died while it ran, a deferral)
    ended, a trigger forgotten. Returns the changes, for an engine's change feed.
    """
    tx = Transitions(now)
    instances = await store.list_task_instances(record.run_id)
    _close_stored_run(record, instances, RunState.CANCELLED, CANCELLED, tx)
    await store.commit(tx.batch)
    return tx.changes


def fail_damaged_run(
    record: RunRecord, instances: list[TaskInstanceRecord], reason: str, tx: Transitions
) -> None:
    """End a run that cannot be picked up again (part of it cannot be read): it fails.

    Like a cancel, it needs no DAG: its unfinished task instances will not run (they are
    cancelled, with `reason` as their error) and the run ends failed.
    """
    error = f"the run cannot be recovered: {reason}"
    if record.state is RunState.QUEUED:  # a run fails only once it ran
        tx.batch.set_run_state(record.run_id, RunState.QUEUED, RunState.RUNNING, at=tx.now)
        record = replace(record, state=RunState.RUNNING)
    _close_stored_run(record, instances, RunState.FAILED, error, tx)


def _close_stored_run(
    record: RunRecord,
    instances: list[TaskInstanceRecord],
    state: RunState,
    error: str,
    tx: Transitions,
) -> None:
    for ti in instances:
        if not ti.state.finished:
            _cancel_row(ti, tx.batch, tx.now, error)
            tx.changes.append(_cancelled(ti, record.dag_id, tx.now, error))
    tx.batch.set_run_state(record.run_id, record.state, state, at=tx.now)
    tx.changes.append(
        RunChanged(run_id=record.run_id, dag_id=record.dag_id, state=state, at=tx.now)
    )


def _cancel_row(ti: TaskInstanceRecord, batch: WriteBatch, now: float, error: str) -> None:
    if ti.state in _TRY_OPEN and ti.try_number:
        batch.end_try(ti.key, ti.try_number, TaskState.CANCELLED, at=now, error=error)
    if ti.state is TaskState.DEFERRED:
        batch.delete_trigger(ti.key)
    batch.set_task_state(
        ti.key, ti.state, TaskState.CANCELLED, ended_at=now, error=error, next_call=None
    )


def _cancelled(ti: TaskInstanceRecord, dag_id: str, now: float, error: str) -> TaskChanged:
    return TaskChanged(
        run_id=ti.run_id,
        dag_id=dag_id,
        task_id=ti.task_id,
        map_index=ti.map_index,
        state=TaskState.CANCELLED,
        try_number=ti.try_number,
        at=now,
        error=error,
    )
