"""Admission and readiness cost what changed, not the number of active runs or instances.

A burst of event runs queues thousands of runs behind `max_active_runs`; an `.expand()` makes
thousands of instances in one run. The scheduler is driven directly, step by step as the engine
drives it, and the work of a step is counted (how often a run's state is read, how often its
dirty tasks are popped, how many calls the engine's own code makes), never timed.
"""

from __future__ import annotations

import gc
import itertools
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any

from schedulerkit import DrivenScheduler, admitted

import orchestrator
from orchestrator import DAG, task
from orchestrator.changes import RunChanged
from orchestrator.scheduling.active_runs import ActiveRun, DagPlan, TaskInstance, Transitions
from orchestrator.scheduling.driven_runs import DrivenRuns
from orchestrator.scheduling.recovery import rebuild_run
from orchestrator.scheduling.scheduler import Scheduler
from orchestrator.state import RunState, TaskState
from orchestrator.store.records import RunRecord, TaskInstanceRecord


class CountingRun(ActiveRun):
    """An `ActiveRun` that counts how often the scheduler looks at it."""

    looks = 0  # reads of `state`: every run the scheduler considers reads it
    pops = 0  # calls of `pop_dirty`: at least one per run `advance` visits

    @property  # type: ignore[override]
    def state(self) -> RunState:
        CountingRun.looks += 1
        return self._state

    @state.setter
    def state(self, value: RunState) -> None:
        self._state = value

    def pop_dirty(self) -> str | None:
        CountingRun.pops += 1
        return super().pop_dirty()

    @classmethod
    def reset(cls) -> None:
        cls.looks = cls.pops = 0


class Harness(DrivenScheduler):
    """The scheduler with room for every task; runs that count how often they are looked at."""

    def __init__(self, *, slots: int = 1000) -> None:
        super().__init__(slots=slots, now=5000.0)
        self._ids = itertools.count()
        self._plans: dict[str, DagPlan] = {}

    def record(self, dag: DAG, queued_at: float, state: RunState = RunState.QUEUED) -> RunRecord:
        run_id = f"{dag.dag_id}-{next(self._ids):05d}"
        return RunRecord(
            run_id=run_id, dag_id=dag.dag_id, state=state, conf={}, queued_at=queued_at
        )

    def queue(self, dag: DAG, queued_at: float) -> ActiveRun:
        run = CountingRun(self.record(dag, queued_at), dag, self.plan(dag))
        self.scheduler.add_run(run)
        return run

    def plan(self, dag: DAG) -> DagPlan:
        return self._plans.setdefault(dag.dag_id, DagPlan.of(dag))

    def running_of(self, run_id: str) -> TaskInstance:
        return next(ti for ti in self.running if ti.run.run_id == run_id)


def one_task_dag(dag_id: str, max_active_runs: int) -> DAG:
    with DAG(dag_id, max_active_runs=max_active_runs) as dag:

        @task
        def work() -> None:
            return None

        work()
    return dag


def ended(tx: Transitions) -> list[str]:
    return [c.run_id for c in tx.changes if isinstance(c, RunChanged) and c.state.finished]


async def test_a_step_with_one_finished_run_touches_a_few_runs_not_the_whole_queue() -> None:
    harness = Harness()
    dag = one_task_dag("burst", max_active_runs=4)
    runs = [harness.queue(dag, queued_at=float(i)) for i in range(2000)]
    first = harness.step()
    assert admitted(first) == [run.run_id for run in runs[:4]]
    assert len(harness.running) == 4

    CountingRun.reset()
    tx = harness.step(harness.running_of(runs[0].run_id))

    assert ended(tx) == [runs[0].run_id]
    assert admitted(tx) == [runs[4].run_id]  # the oldest queued run takes the freed place
    assert harness.scheduler.running_runs("burst") == 4
    assert CountingRun.looks <= 20, CountingRun.looks  # the old scan read all 2,000
    assert CountingRun.pops <= 10, CountingRun.pops


async def test_draining_a_burst_costs_work_linear_in_its_size() -> None:
    harness = Harness()
    dag = one_task_dag("burst", max_active_runs=4)
    runs = [harness.queue(dag, queued_at=float(i)) for i in range(2000)]
    order: list[str] = admitted(harness.step())
    CountingRun.reset()
    while harness.running:
        tx = harness.step(harness.running[0])
        order += admitted(tx)
        assert harness.scheduler.running_runs("burst") <= 4
    assert order == [run.run_id for run in runs]  # first queued, first started
    assert not harness.scheduler.runs
    assert CountingRun.looks <= 20 * len(runs), CountingRun.looks
    assert CountingRun.pops <= 5 * len(runs), CountingRun.pops


async def test_an_expanded_task_costs_work_linear_in_its_elements() -> None:
    small, large = engine_calls_to_expand(200), engine_calls_to_expand(2000)
    # Ten times the elements, about ten times the calls. Settling each element used to scan
    # all its siblings to see whether the task was done: a hundred times the calls.
    assert large < 13 * small, (small, large)


async def test_a_full_pool_holds_back_only_its_own_tasks_in_priority_order() -> None:
    with DAG("mixed") as dag:

        @task
        def work() -> None:
            return None

        for index, weight in enumerate((50, 40, 30)):
            work.override(task_id=f"gpu{index}", pool="gpu", priority_weight=weight)()
        for index, weight in enumerate((20, 10, 5)):
            work.override(task_id=f"cpu{index}", priority_weight=weight)()
    harness = DrivenScheduler(slots=3, pools={"gpu": 1}, now=1.0)
    harness.scheduler.add_run(ActiveRun(Harness().record(dag, 1.0), dag, DagPlan.of(dag)))

    harness.step()
    assert [ti.task_id for ti in harness.running] == ["gpu0", "cpu0", "cpu1"]
    harness.step(harness.running[1])
    assert [ti.task_id for ti in harness.running] == ["gpu0", "cpu1", "cpu2"]
    harness.step(harness.running[0])
    assert [ti.task_id for ti in harness.running] == ["cpu1", "cpu2", "gpu1"]


def engine_calls_to_expand(elements: int) -> int:
    """Calls (and generator steps) in `orchestrator/` to run `square.expand()` to its end."""
    with DAG("expand") as dag:

        @task
        def square(x: int) -> int:
            return x * x

        square.expand(x=list(range(elements)))
    harness = Harness(slots=100)
    run = harness.queue(dag, queued_at=1.0)
    with counting_engine_calls() as calls:
        harness.step()
        while harness.running:
            harness.step(*harness.running)
    assert run.state is RunState.SUCCESS
    assert len(run.instances["square"]) == elements
    return calls[0]


@contextmanager
def counting_engine_calls() -> Iterator[list[int]]:
    """Count the Python calls (and generator steps) in `orchestrator/`, in the list's one item."""
    root = str(Path(orchestrator.__file__).parent)
    calls = [0]

    def count(frame: FrameType, event: str, arg: Any) -> None:
        if event == "call" and frame.f_code.co_filename.startswith(root):
            calls[0] += 1

    sys.setprofile(count)
    try:
        yield calls
    finally:
        sys.setprofile(None)


async def test_runs_are_admitted_oldest_first_across_dags_and_in_insertion_order_on_ties() -> None:
    harness = Harness()
    dags = {name: one_task_dag(name, max_active_runs=1) for name in "abc"}
    harness.queue(dags["c"], queued_at=10.0)
    harness.queue(dags["a"], queued_at=20.0)
    b_first = harness.queue(dags["b"], queued_at=5.0)  # added later, but queued earlier
    harness.queue(dags["b"], queued_at=5.0)  # a tie: it goes after the one added first
    a_early = harness.queue(dags["a"], queued_at=1.0)

    tx = harness.step()

    assert [run_id.split("-")[0] for run_id in admitted(tx)] == ["a", "b", "c"]
    assert admitted(tx)[:2] == [a_early.run_id, b_first.run_id]
    later = harness.step(harness.running_of(b_first.run_id))
    assert admitted(later) == ["b-00003"]


async def test_each_dag_keeps_its_own_limit() -> None:
    harness = Harness()
    small = one_task_dag("small", max_active_runs=2)
    large = one_task_dag("large", max_active_runs=3)
    small_runs = [harness.queue(small, queued_at=float(i)) for i in range(10)]
    for i in range(10):
        harness.queue(large, queued_at=float(i))

    harness.step()
    assert harness.scheduler.running_runs("small") == 2
    assert harness.scheduler.running_runs("large") == 3

    tx = harness.step(harness.running_of(small_runs[0].run_id))
    assert admitted(tx) == [small_runs[2].run_id]  # only the DAG that freed a place admits
    assert harness.scheduler.running_runs("large") == 3


async def test_a_run_cancelled_while_queued_is_never_admitted() -> None:
    harness = Harness()
    dag = one_task_dag("cancel", max_active_runs=1)
    runs = [harness.queue(dag, queued_at=float(i)) for i in range(3)]
    harness.step()
    tx = Transitions(5000.0)
    assert harness.scheduler.cancel(runs[1], tx) == []
    assert ended(tx) == [runs[1].run_id]

    tx = harness.step(harness.running_of(runs[0].run_id))
    assert admitted(tx) == [runs[2].run_id]


async def test_a_cancelled_run_with_nothing_running_finishes_in_the_same_step() -> None:
    harness = Harness()
    with DAG("chain", max_active_runs=1) as dag:

        @task
        def first() -> None:
            return None

        @task
        def second() -> None:
            return None

        first() >> second()
    run = harness.queue(dag, queued_at=0.0)
    harness.step()
    harness.step(harness.running_of(run.run_id))  # `second` is running now
    killed = harness.scheduler.cancel(run, Transitions(5000.0))
    assert [ti.task_id for ti in killed] == ["second"]

    tx = harness.step(killed[0])  # its outcome is all the run waited for

    assert ended(tx) == [run.run_id]
    assert run.state is RunState.CANCELLED


async def test_recovered_runs_keep_the_limit_and_a_finished_one_ends_at_once() -> None:
    harness = Harness()
    dag = one_task_dag("recovered", max_active_runs=2)
    scheduled = recovered(harness, dag, TaskState.SCHEDULED, queued_at=0.0)
    done = recovered(harness, dag, TaskState.SUCCESS, queued_at=1.0)  # stopped before ending
    queued = [harness.queue(dag, queued_at=float(i)) for i in range(2, 5)]
    assert harness.scheduler.running_runs("recovered") == 2

    tx = harness.step()

    assert ended(tx) == [done.run_id]  # nothing dirty, but nothing left either: it finishes
    assert admitted(tx) == [queued[0].run_id]  # into the place it freed, and no more
    assert {ti.run.run_id for ti in harness.running} == {scheduled.run_id, queued[0].run_id}
    assert harness.scheduler.running_runs("recovered") == 2
    tx = harness.step(harness.running_of(scheduled.run_id))
    assert ended(tx) == [scheduled.run_id]
    assert admitted(tx) == [queued[1].run_id]


async def test_a_recovered_queued_run_waits_for_its_place() -> None:
    harness = Harness()
    dag = one_task_dag("recovered", max_active_runs=1)
    running = recovered(harness, dag, TaskState.SCHEDULED, queued_at=5.0)
    record = harness.record(dag, 1.0)  # queued earlier than the running one started
    queued = rebuild_run(record, dag, harness.plan(dag), [], {})
    harness.scheduler.recover(queued, {}, Transitions(5000.0))

    assert admitted(harness.step()) == []
    tx = harness.step(harness.running_of(running.run_id))
    assert admitted(tx) == [queued.run_id]
    assert [ti.task_id for ti in harness.running] == ["work"]


def recovered(harness: Harness, dag: DAG, state: TaskState, queued_at: float) -> ActiveRun:
    """A running run read back after a restart, its one task instance in `state`."""
    record = harness.record(dag, queued_at, RunState.RUNNING)
    row = TaskInstanceRecord(
        run_id=record.run_id, task_id="work", map_index=-1, state=state, priority=1
    )
    run = rebuild_run(record, dag, harness.plan(dag), [row], {})
    harness.scheduler.recover(run, {}, Transitions(5000.0))
    return run


def test_each_dag_gets_its_own_plan_once_even_when_a_dropped_dags_id_is_reused() -> None:
    """A reload drops DAG objects and makes new ones, which may get a dropped one's `id()`:
    the plan cache of the driven runs must not give them the dropped DAG's plan."""
    driven = DrivenRuns(Scheduler(slots=1, pools={}, log_dir="logs"))
    for index in range(20):
        with DAG(f"reloaded_{index}") as dag:
            for name in ("a", "b", "c")[: index % 3 + 1]:
                task(lambda: None, task_id=f"{name}{index}")()
        plan = driven.plan(dag)
        assert plan is driven.plan(dag)  # computed once
        assert plan == DagPlan.of(dag)
        del dag, plan
        gc.collect()  # the DAG's memory (and so its id) is free for the next one
