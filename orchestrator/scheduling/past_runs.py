"""Tasks that depend on their past (Airflow's `depends_on_past`, `wait_for_downstream`).

Such a task runs in a run only once the same task in the DAG's previous run succeeded or was
skipped, and, with `wait_for_downstream`, its direct downstream tasks there too. The previous
run is the DAG's run just before this one by logical date (by queue time for a run without
one), whatever its kind or state; a DAG's first run has none, and its tasks run. A task the
previous run has no instance of (it was added since, or that run never got to it) runs too.

Until then the task stays `none`, with a note saying what it waits for: it has not failed, as
in Airflow, where it keeps no state. If the previous run's task failed, it waits until someone
clears that task and it runs again. It is evaluated again when that task settles, or when that
run ends.

Knowing the previous run takes a store read, and the scheduler is synchronous: the first
evaluation of such a task in a run finds nothing known, asks for the read and sets a timer due
at once; the engine's next step makes the read before it decides (`read`) and has the run's
waiting tasks evaluated again. Runs of DAGs without such tasks never cost a read. A previous
run this engine drives is looked at live; one that has ended is read once from the store.

A run started with `ignore` (`orchestrator run --ignore-depends-on-past`) is taken for its
DAG's first run: nothing in it waits. `stuck` says when a run can go no further because its
tasks wait on a run this engine does not drive: only the foreground command may read that as
final, since with a daemon someone can still clear the old task.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from orchestrator.authoring.dag import DAG
from orchestrator.authoring.tasks import Task
from orchestrator.scheduling.active_runs import ActiveRun, Transitions
from orchestrator.scheduling.deferred import Timer
from orchestrator.state import RunState, TaskState
from orchestrator.store.base import Store
from orchestrator.store.records import TaskInstanceRecord

#: The kind of the timer that brings the step making the reads (it does nothing itself).
PAST_READ = "past"
_DONE = frozenset({TaskState.SUCCESS, TaskState.SKIPPED})
_READING = "reading the previous run"

TaskStates = dict[str, list[TaskState]]  # task_id -> the states of its instances


@dataclass(frozen=True, order=True)
class PastWait:
    """A task that waits on a task of its run's previous run, which this engine does not drive."""

    task_id: str
    previous_run_id: str
    previous_task_id: str
    states: tuple[TaskState, ...]  # the previous task's instances' states, as that run left them


class PastRuns:
    """Which runs wait on their previous run, and what those previous runs' tasks did."""

    def __init__(self, runs: Mapping[str, ActiveRun], add_timer: Callable[[Timer], None]) -> None:
        self._runs = runs  # the scheduler's active runs: a previous run among them is live
        self._add_timer = add_timer
        self._previous: dict[str, str | None] = {}  # run_id -> its previous run (None: first)
        self._ended: dict[str, TaskStates] = {}  # previous runs no longer driven, as they ended
        # (previous run, its task) -> the (run_id, task_id) that wait for that task to be done
        self._waiting: dict[tuple[str, str], set[tuple[str, str]]] = {}
        self._unread: dict[str, ActiveRun] = {}  # runs whose previous run is to be read

    def ignore(self, run_id: str) -> None:
        """The run's tasks do not wait on its past: it is taken for its DAG's first run.

        Kept in memory, not with the run: the foreground run it is for ends with its process,
        and a run such a process leaves behind is a daemon's, where waiting on the past is
        right (someone can clear the old task there).
        """
        self._previous[run_id] = None

    def holds(self, run: ActiveRun, task: Task, tx: Transitions) -> bool:
        """True if `task` may not start in `run` yet because of the previous run.

        A task that waits on a task of the previous run is noted (store, change feed) with the
        task it waits for; one that may start loses its note.
        """
        reason = self._reason(run, task, tx)
        instance = run.instances[task.task_id].get(-1)
        if instance is not None and reason != _READING and instance.error != reason:
            instance.error = reason
            tx.batch.note_waiting(instance.key, reason)
            tx.announce(instance)
        return reason is not None

    def _reason(self, run: ActiveRun, task: Task, tx: Transitions) -> str | None:
        if run.run_id not in self._previous:
            if not self._unread:
                self._add_timer(Timer(tx.now, (run.run_id, task.task_id, -1), PAST_READ))
            self._unread[run.run_id] = run
            return _READING
        previous = self._previous[run.run_id]
        if previous is None:
            return None
        for task_id in _watched(task):
            if not self._done(previous, task_id):
                self._waiting.setdefault((previous, task_id), set()).add((run.run_id, task.task_id))
                return f"waiting for the previous run's {task_id} ({previous})"
        return None

    def _done(self, previous: str, task_id: str) -> bool:
        """The previous run's task succeeded or was skipped (or that run has no such task)."""
        live = self._runs.get(previous)
        if live is None:
            states = self._ended.get(previous, {}).get(task_id, [])
        elif task_id not in live.dag.tasks:
            return True
        elif task_id in live.unfinished:
            return False
        else:
            states = [ti.state for ti in live.instances[task_id].values()]
        return all(state in _DONE for state in states)

    def stuck(self, run: ActiveRun) -> list[PastWait]:
        """The run's tasks that wait on a previous run this engine does not drive, when nothing
        else in the run can move: without an edit from outside, the run goes no further.

        Empty while the run can still move, waits on a run this engine drives, or has its
        previous run unread. Cheap when so: the foreground command asks after every change.
        """
        previous = self._previous.get(run.run_id)
        if previous is None or previous in self._runs or run.state is not RunState.RUNNING:
            return []
        ended = self._ended.get(previous, {})
        waits = [
            PastWait(task_id, previous, watched, tuple(ended.get(watched, ())))
            for (past, watched), waiters in self._waiting.items()
            if past == previous
            for run_id, task_id in waiters
            if run_id == run.run_id and _unstarted(run, task_id)
        ]
        return sorted(waits) if waits and not _moving(run) else []

    async def read(self, store: Store) -> None:
        """Find the previous run of every run that asked, and evaluate its waiting tasks again."""
        if not self._unread:
            return  # every step passes here: nothing to read is the usual case
        unread, self._unread = self._unread, {}
        for run in unread.values():
            record = await store.previous_run(run.dag.dag_id, run.run_id)
            previous = None if record is None else record.run_id
            self._previous[run.run_id] = previous
            if previous is not None and previous not in self._runs and previous not in self._ended:
                self._ended[previous] = _by_task(await store.list_task_instances(previous))
            run.mark_dirty(depending_tasks(run.dag))

    def settled(self, run: ActiveRun, task_id: str) -> None:
        """Every instance of the task finished: what waited on it is evaluated again."""
        if self._waiting:
            self._wake(self._waiting.pop((run.run_id, task_id), ()))

    def waiting_count(self) -> int:
        """How many (run, task) pairs wait on a task of a previous run."""
        return sum(len(waiters) for waiters in self._waiting.values())

    def ended(self, run: ActiveRun) -> None:
        """The run ended: keep its tasks' states for the runs after it, and wake them; if it
        was waiting itself (cancelled, timed out), it waits no more."""
        if self._previous.pop(run.run_id, None) is not None:
            self._forget_waiter(run.run_id)
        self._unread.pop(run.run_id, None)
        if not self._previous and not self._ended:
            return  # nothing depends on the past: the usual case, and free
        if run.run_id in self._previous.values():
            self._ended[run.run_id] = {
                task_id: [ti.state for ti in instances.values()]
                for task_id, instances in run.instances.items()
            }
            waits = [key for key in self._waiting if key[0] == run.run_id]
            self._wake(waiter for key in waits for waiter in self._waiting.pop(key))
        kept = set(self._previous.values())
        for run_id in [run_id for run_id in self._ended if run_id not in kept]:
            del self._ended[run_id]

    def _forget_waiter(self, run_id: str) -> None:
        for key in list(self._waiting):
            waiters = self._waiting[key]
            waiters.difference_update({pair for pair in waiters if pair[0] == run_id})
            if not waiters:
                del self._waiting[key]

    def _wake(self, waiters: Iterable[tuple[str, str]]) -> None:
        for run_id, task_id in waiters:
            run = self._runs.get(run_id)
            if run is not None:
                run.mark_dirty([task_id])


def depending_tasks(dag: DAG) -> list[str]:
    """The DAG's tasks that depend on their past (none, for most DAGs)."""
    return [task_id for task_id, task in dag.tasks.items() if task.options.depends_on_past]


def _watched(task: Task) -> list[str]:
    """The tasks of the previous run that must be done: the task, and its direct downstream
    tasks too with `wait_for_downstream`."""
    if not task.options.wait_for_downstream:
        return [task.task_id]
    return [task.task_id, *sorted(task.downstream_task_ids)]


def _unstarted(run: ActiveRun, task_id: str) -> bool:
    return all(ti.state is TaskState.NONE for ti in run.instances[task_id].values())


def _moving(run: ActiveRun) -> bool:
    """Some instance of the run is scheduled, running, deferred or up for retry.

    The count of running ones answers first: asked after every change, a scan of a large
    expanded task's instances each time would cost their number squared.
    """
    return run.running > 0 or any(
        ti.state is not TaskState.NONE and not ti.state.finished for ti in run.each_instance()
    )


def _by_task(rows: list[TaskInstanceRecord]) -> TaskStates:
    states: TaskStates = {}
    for row in rows:
        states.setdefault(row.task_id, []).append(row.state)
    return states
