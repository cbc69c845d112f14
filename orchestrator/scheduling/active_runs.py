"""The scheduler's in-memory picture of the runs it is driving.

The store holds the durable truth; this mirrors the active runs so that deciding what to do
next never needs a query. Every change made here is also written into a `WriteBatch`, and
announced as a `Change`, by `Transitions`.
"""

from __future__ import annotations

import heapq
import itertools
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from orchestrator.authoring.context import TaskContext
from orchestrator.authoring.dag import DAG
from orchestrator.authoring.tasks import Task
from orchestrator.changes import Change, RunChanged, TaskChanged
from orchestrator.state import FINISHED_TASK_STATES, RunState, TaskState
from orchestrator.store.base import WriteBatch
from orchestrator.store.records import RunRecord, TriggerRecord, TryRecord


@dataclass(eq=False)
class TaskInstance:
    """One task in one run (one element, for an expanded task)."""

    run: ActiveRun
    task: Task
    map_index: int
    state: TaskState
    priority: int
    try_number: int = 0
    max_tries: int = 1
    mapped_inputs: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    log_path: str = ""
    # While deferred or resuming: the resume target, its kwargs, what a timeout does, and
    # (once the trigger fired) the event. None otherwise.
    next_call: dict[str, Any] | None = None
    timeout_at: float | None = None  # when the current deferral times out
    next_retry_at: float | None = None  # read back after a restart: when its backoff ends
    interrupted_tries: int = 0  # tries cut short by the daemon's death (they cost no retry)
    # Made once: read five times and more per instance as a sensor arms (a property made a
    # tuple each time). The run, task and map index of an instance never change.
    key: tuple[str, str, int] = field(init=False, repr=False)
    task_id: str = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.task_id = task_id = self.task.task_id
        self.key = (self.run.run_id, task_id, self.map_index)

    @property
    def resuming(self) -> bool:
        """Scheduled (or running) to resume after its trigger fired, in the same try."""
        return self.next_call is not None and "event" in self.next_call

    def context(self, log_path: str) -> TaskContext:
        """The context of its current try."""
        return self.run.context(
            self.task_id,
            map_index=self.map_index,
            try_number=self.try_number,
            max_tries=self.max_tries,
            log_path=log_path,
        )


@dataclass(frozen=True)
class DagPlan:
    """What every run of one DAG shares, computed once: topological order and priorities."""

    ordered: list[str]  # task ids in topological order
    order: dict[str, int]  # task_id -> topological index
    priorities: dict[str, int]  # task_id -> effective priority weight

    @classmethod
    def of(cls, dag: DAG) -> DagPlan:
        ordered, priorities = dag.order_and_priorities()
        order = {task_id: index for index, task_id in enumerate(ordered)}
        return cls(ordered=ordered, order=order, priorities=priorities)


class ActiveRun:
    """A run that is queued or running, with its task instances and the results so far."""

    def __init__(self, record: RunRecord, dag: DAG, plan: DagPlan) -> None:
        self.run_id = record.run_id
        self.run_type = record.run_type
        self.dag = dag
        self.state = record.state
        self.conf = record.conf
        self.queued_at = record.queued_at
        self.started_at = record.started_at
        self.logical_date = record.logical_date
        self.data_interval_end = record.data_interval_end
        self.params = {**dag.params, **{k: v for k, v in record.conf.items() if k in dag.params}}
        self.order = plan.order
        self._ordered = plan.ordered
        self.priorities = plan.priorities
        #: task_id -> map index -> instance. Read freely; change only through `add_instance`,
        #: `remove_instance` and `set_state`, which keep `_unfinished_instances` in step.
        self.instances: dict[str, dict[int, TaskInstance]] = {task_id: {} for task_id in dag.tasks}
        # How many of each task's instances are not finished: settling one of 100,000 expanded
        # instances asks whether its task is done, and scanning them all each time was quadratic.
        self._unfinished_instances: Counter[str] = Counter()
        self.results: dict[str, dict[int, Any]] = {}
        self._result_view = ResultView(self.results)  # live: `results` changes in place only
        self.unfinished: set[str] = set(dag.tasks)
        self.running = 0
        self.cancelling = False
        self.failure: str | None = None  # a cancel that fails the run (its timeout): why
        # Topological indexes of the dirty tasks, a heap (of ints: tuples compare slower).
        self._dirty: list[int] = []
        self._dirty_set: set[str] = set()
        #: Told when a task is marked dirty, so the scheduler visits only runs with work to do.
        self.on_dirty: Callable[[ActiveRun], None] = _ignore

    def context(self, task_id: str = "", **task_fields: Any) -> TaskContext:
        """The run's part of a task context; without a task, one for the run itself."""
        return TaskContext(
            dag_id=self.dag.dag_id,
            run_id=self.run_id,
            task_id=task_id,
            conf=self.conf,
            params=self.params,
            logical_date=self.logical_date,
            data_interval_end=self.data_interval_end,
            **task_fields,
        )

    def mark_dirty(self, task_ids: set[str] | list[str]) -> None:
        """Ask for these tasks' trigger rules to be evaluated again (and tell `on_dirty`)."""
        for task_id in task_ids:
            if task_id not in self._dirty_set:
                self._dirty_set.add(task_id)
                heapq.heappush(self._dirty, self.order[task_id])
        if self._dirty:
            self.on_dirty(self)

    def pop_dirty(self) -> str | None:
        """The dirty task that comes first in topological order (so cascades settle in one pass)."""
        if not self._dirty:
            return None
        task_id = self._ordered[heapq.heappop(self._dirty)]
        self._dirty_set.discard(task_id)
        return task_id

    def upstream_states(self, task: Task, *, setups_only: bool = False) -> list[TaskState]:
        """The states of the instances of every direct upstream task (or of every one that is
        a setup); `none` while unexpanded."""
        states: list[TaskState] = []
        for upstream_id in task.upstream_task_ids:
            if setups_only and not self.dag.tasks[upstream_id].is_setup:
                continue
            instances = self.instances[upstream_id]
            states.extend(ti.state for ti in instances.values()) if instances else states.append(
                TaskState.NONE
            )
        return states

    def result_view(self) -> ResultView:
        """task_id -> result, with an expanded task's results as a list in map order."""
        return self._result_view

    def add_instance(self, ti: TaskInstance) -> None:
        """Adopt a task instance (new, or read back from the store)."""
        self.instances[ti.task_id][ti.map_index] = ti
        if ti.state not in FINISHED_TASK_STATES:
            self._unfinished_instances[ti.task_id] += 1

    def remove_instance(self, ti: TaskInstance) -> None:
        """Forget a task instance whose row is deleted."""
        del self.instances[ti.task_id][ti.map_index]
        if ti.state not in FINISHED_TASK_STATES:
            self._unfinished_instances[ti.task_id] -= 1

    def set_state(self, ti: TaskInstance, new: TaskState) -> None:
        """Change an instance's state in memory (`Transitions.move` also records it)."""
        finished = new in FINISHED_TASK_STATES
        if (ti.state in FINISHED_TASK_STATES) != finished:  # most moves stay on one side
            task_id = ti.task_id
            if self.instances[task_id].get(ti.map_index) is ti:  # adopted
                self._unfinished_instances[task_id] += -1 if finished else 1
        ti.state = new

    def task_finished(self, task_id: str) -> bool:
        """Every instance of the task is finished (and it has at least one)."""
        return bool(self.instances[task_id]) and self._unfinished_instances[task_id] == 0

    def each_instance(self) -> Iterator[TaskInstance]:
        """Every task instance of the run, task by task."""
        for instances in self.instances.values():
            yield from instances.values()

    def leaf_states(self) -> list[TaskState]:
        return [ti.state for leaf in self.dag.leaves for ti in self.instances[leaf].values()]


def _ignore(run: ActiveRun) -> None:
    """The `on_dirty` of a run no scheduler has adopted yet (being rebuilt after a restart)."""


class RunQueue:
    """Queued runs per DAG, oldest first, and how many of each DAG's runs are running.

    Admission must cost what changed, not the number of active runs: with a thousand event runs
    queued behind `max_active_runs`, every finished run would otherwise sort them all again.
    Only DAGs in `_candidates` (something changed that may let them admit) are looked at, and
    each gives up its oldest runs until it is full. A cancelled queued run is dropped lazily,
    when it reaches the head of its queue.
    """

    def __init__(self) -> None:
        self.paused: set[str] = set()
        self._queued: dict[str, list[tuple[float, int, ActiveRun]]] = {}
        self._running: Counter[str] = Counter()
        self._candidates: set[str] = set()
        self._order = itertools.count()  # ties on queued_at go in insertion order

    def queue(self, run: ActiveRun) -> None:
        dag_id = run.dag.dag_id
        heapq.heappush(self._queued.setdefault(dag_id, []), (run.queued_at, next(self._order), run))
        self._candidates.add(dag_id)

    def count_running(self, run: ActiveRun) -> None:
        """A run already running (picked up after a restart) holds one of its DAG's places."""
        self._running[run.dag.dag_id] += 1

    def ended(self, run: ActiveRun) -> None:
        """A running run finished: its place goes to the DAG's next queued run."""
        dag_id = run.dag.dag_id
        self._running[dag_id] -= 1
        if self._running[dag_id] <= 0:
            del self._running[dag_id]
        if dag_id in self._queued:
            self._candidates.add(dag_id)

    def set_paused(self, dag_id: str, paused: bool) -> None:
        if paused:
            self.paused.add(dag_id)
        else:
            self.paused.discard(dag_id)
            self._candidates.add(dag_id)

    def running(self, dag_id: str) -> int:
        """How many runs of the DAG are running."""
        return self._running[dag_id]

    def queued(self, dag_id: str) -> int:
        """How many runs of the DAG wait to start (a run cancelled while queued may count)."""
        return len(self._queued.get(dag_id, ()))

    def admit(self) -> list[ActiveRun]:
        """Take the runs that may start now, oldest first across DAGs, counting them running."""
        heads = [head for dag_id in self._candidates if (head := self._head(dag_id)) is not None]
        self._candidates.clear()  # full, paused or empty now: only a change brings one back
        heapq.heapify(heads)
        admitted = []
        while heads:
            _, _, dag_id = heapq.heappop(heads)
            run = heapq.heappop(self._queued[dag_id])[2]
            self._running[dag_id] += 1
            admitted.append(run)
            if (head := self._head(dag_id)) is not None:
                heapq.heappush(heads, head)
        return admitted

    def _head(self, dag_id: str) -> tuple[float, int, str] | None:
        """The DAG's oldest queued run's (queued_at, order, dag_id), if it may start now."""
        queue = self._queued.get(dag_id)
        while queue and queue[0][2].state is not RunState.QUEUED:
            heapq.heappop(queue)  # cancelled while queued
        if not queue:
            self._queued.pop(dag_id, None)
            return None
        queued_at, order, run = queue[0]
        if dag_id in self.paused or self._running[dag_id] >= run.dag.max_active_runs:
            return None
        return (queued_at, order, dag_id)


class ResultView(Mapping[str, Any]):
    """Results by task id, computed on lookup: a task reads one or two, not the whole run."""

    def __init__(self, results: dict[str, dict[int, Any]]) -> None:
        self._results = results

    def __getitem__(self, task_id: str) -> Any:
        by_index = self._results[task_id]
        if -1 in by_index:
            return by_index[-1]
        return [by_index[index] for index in sorted(by_index)]

    def __iter__(self) -> Iterator[str]:
        return iter(self._results)

    def __len__(self) -> int:
        return len(self._results)


_STILL_DEFERRING = (TaskState.DEFERRED, TaskState.SCHEDULED, TaskState.QUEUED, TaskState.RUNNING)
# What every move compares with, as module constants: in Python 3.11 reading a member off its
# enum class (`TaskState.NONE`) takes the slow path of `EnumType.__getattr__`, about 0.1 us.
_NONE, _SCHEDULED, _DEFERRED = TaskState.NONE, TaskState.SCHEDULED, TaskState.DEFERRED


class Transitions:
    """Records every state change three ways at once: memory, the write batch, the change feed."""

    def __init__(self, now: float) -> None:
        self.now = now
        self.batch = WriteBatch()
        self.changes: list[Change] = []
        #: Task instances that stopped waiting on their trigger: the engine stops hosting it.
        self.disarmed: list[tuple[str, str, int]] = []

    def move(self, ti: TaskInstance, new: TaskState, **fields: Any) -> None:
        if ti.state is _DEFERRED and new is not _DEFERRED:
            self.batch.delete_trigger(ti.key)  # in the same transaction as the move
            self.disarmed.append(ti.key)
        if ti.next_call is not None and new not in _STILL_DEFERRING:
            ti.next_call = None  # finished, or retrying from the start
            fields["next_call"] = None
        self.batch.set_task_state(ti.key, ti.state, new, **fields)
        if (
            new is _SCHEDULED
            and ti.state is _NONE
            and ti.next_call is None
            and ti.task.defers_at_start
        ):
            # A deferrable sensor leaving `none` is scheduled and deferred in one step (the
            # scheduler's `_make_ready`): `scheduled` is never durable on its own, so the feed
            # hears its `deferred` alone, half the changes when arming 100,000 sensors. A
            # retry, or a sensor resuming on a slot, still announces its `scheduled`.
            ti.run.set_state(ti, new)
            return
        self._moved(ti, new, fields)

    def open_deferral(
        self, ti: TaskInstance, attempt: TryRecord, trigger: TriggerRecord, **fields: Any
    ) -> None:
        """A sensor's first try opens straight into `deferred` (`WriteBatch.open_deferral`)."""
        self.batch.open_deferral(ti.key, ti.state, attempt, trigger, **fields)
        self._moved(ti, _DEFERRED, fields)

    def _moved(self, ti: TaskInstance, new: TaskState, fields: dict[str, Any]) -> None:
        ti.run.set_state(ti, new)
        if "error" in fields:
            ti.error = fields["error"]
        self.announce(ti)

    def announce(self, ti: TaskInstance) -> None:
        self.changes.append(
            TaskChanged(
                run_id=ti.run.run_id,
                dag_id=ti.run.dag.dag_id,
                task_id=ti.task_id,
                map_index=ti.map_index,
                state=ti.state,
                try_number=ti.try_number,
                at=self.now,
                error=ti.error,
                log_path=ti.log_path or None,
            )
        )

    def move_run(self, run: ActiveRun, new: RunState) -> None:
        self.batch.set_run_state(run.run_id, run.state, new, at=self.now)
        run.state = new
        scheduled_for = run.data_interval_end if run.run_type == "scheduled" else None
        self.changes.append(
            RunChanged(
                run_id=run.run_id,
                dag_id=run.dag.dag_id,
                state=new,
                at=self.now,
                scheduled_for=scheduled_for,
            )
        )
