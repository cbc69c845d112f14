"""Pausing a DAG, draining the scheduler at shutdown, and interrupting the tries still running.

A paused DAG admits no queued run (its running runs go on). A draining scheduler admits and
starts nothing while running tasks finish. A try killed after the shutdown grace period fails
with the reason, and its task instance runs again later without losing one of its tries, also
after a restart on the same state directory.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import anyio
from schedulerkit import SUCCESS, DrivenScheduler, admitted

from helpers import bag_of
from orchestrator import DAG, task
from orchestrator.config import Settings
from orchestrator.scheduling.active_runs import ActiveRun, DagPlan, TaskInstance, Transitions
from orchestrator.scheduling.engine import Engine
from orchestrator.state import RunState, TaskState
from orchestrator.store.records import RunRecord

SettingsFactory = Callable[..., Settings]
REASON = "the daemon stopped it after the 30s shutdown grace period"


class Harness(DrivenScheduler):
    """The scheduler with 8 slots; runs queued one after the other."""

    def __init__(self, *, pools: dict[str, int] | None = None) -> None:
        super().__init__(slots=8, pools=pools, now=100.0)
        self._ids = itertools.count()

    def queue(self, dag: DAG) -> ActiveRun:
        record = RunRecord(
            run_id=f"{dag.dag_id}-{next(self._ids)}",
            dag_id=dag.dag_id,
            state=RunState.QUEUED,
            conf={},
            queued_at=float(next(self._ids)),
        )
        run = ActiveRun(record, dag, DagPlan.of(dag))
        self.scheduler.add_run(run)
        return run


def chain_dag(dag_id: str, *, max_active_runs: int = 16, pool: str = "default") -> DAG:
    """`first >> second`, both in `pool`."""
    with DAG(dag_id, max_active_runs=max_active_runs) as dag:

        @task(pool=pool, retries=1)
        def first() -> None:
            return None

        @task
        def second() -> None:
            return None

        first() >> second()
    return dag


def instance(run: ActiveRun, task_id: str) -> TaskInstance:
    return run.instances[task_id][-1]


# -- pause -----------------------------------------------------------------------------------------


async def test_a_paused_dag_admits_nothing_until_it_is_unpaused() -> None:
    harness = Harness()
    held, free = chain_dag("held"), chain_dag("free")
    harness.scheduler.set_paused("held", True)
    held_runs = [harness.queue(held), harness.queue(held)]
    free_run = harness.queue(free)

    assert admitted(harness.step()) == [free_run.run_id]
    assert harness.scheduler.paused == {"held"}
    assert all(run.state is RunState.QUEUED for run in held_runs)

    harness.scheduler.set_paused("held", False)
    assert admitted(harness.step()) == [run.run_id for run in held_runs]  # at once, no outcome
    assert harness.scheduler.paused == set()


async def test_assigning_the_paused_set_pauses_and_unpauses() -> None:
    harness = Harness()
    dags = [chain_dag("a", max_active_runs=1), chain_dag("b", max_active_runs=1)]
    harness.scheduler.paused = {"a", "b"}
    runs = [harness.queue(dag) for dag in dags]
    assert admitted(harness.step()) == []

    harness.scheduler.paused = {"b"}

    assert admitted(harness.step()) == [runs[0].run_id]
    assert harness.scheduler.paused == {"b"} and runs[1].state is RunState.QUEUED


async def test_pausing_lets_running_runs_finish_but_not_the_next_queued_one() -> None:
    harness = Harness()
    dag = chain_dag("one_at_a_time", max_active_runs=1)
    running, waiting = harness.queue(dag), harness.queue(dag)
    harness.step()
    harness.scheduler.set_paused("one_at_a_time", True)

    harness.step(instance(running, "first"))
    tx = harness.step(instance(running, "second"))

    assert running.state is RunState.SUCCESS
    assert admitted(tx) == []
    assert waiting.state is RunState.QUEUED
    harness.scheduler.set_paused("one_at_a_time", False)
    assert admitted(harness.step()) == [waiting.run_id]


# -- drain -----------------------------------------------------------------------------------------


async def test_draining_admits_and_starts_nothing_while_running_tasks_finish() -> None:
    harness = Harness()
    dag = chain_dag("drained")
    first_run = harness.queue(dag)
    harness.step()
    harness.scheduler.draining = True
    later_run = harness.queue(dag)

    tx = harness.step(instance(first_run, "first"))  # a running task finishes as usual

    assert instance(first_run, "first").state is TaskState.SUCCESS
    assert instance(first_run, "second").state is TaskState.SCHEDULED  # ready, not started
    assert admitted(tx) == [] and later_run.state is RunState.QUEUED
    assert harness.running == [] and harness.scheduler.slots_used == 0

    harness.scheduler.draining = False
    tx = harness.step()
    assert admitted(tx) == [later_run.run_id]
    assert {(ti.run.run_id, ti.task_id) for ti in harness.running} == {
        (first_run.run_id, "second"),
        (later_run.run_id, "first"),
    }


# -- interrupt -------------------------------------------------------------------------------------


async def test_an_interrupted_try_fails_and_its_instance_is_scheduled_with_a_try_given_back() -> (
    None
):
    harness = Harness(pools={"gpu": 1})
    run = harness.queue(chain_dag("gpu_job", pool="gpu"))
    harness.step()
    ti = instance(run, "first")
    assert (ti.state, ti.max_tries, harness.scheduler.pool_used["gpu"]) == (TaskState.RUNNING, 2, 1)

    tx = Transitions(100.0)
    harness.scheduler.interrupt(ti, REASON, tx)

    assert (ti.state, ti.max_tries, ti.error) == (TaskState.SCHEDULED, 3, REASON)
    assert harness.scheduler.slots_used == 0 and harness.scheduler.pool_used["gpu"] == 0
    assert run.running == 0
    ops = {op.kind: op.args for op in tx.batch.ops}
    assert ops["end_try"]["state"] is TaskState.FAILED and ops["end_try"]["error"] == REASON
    assert ops["set_task_state"]["new"] is TaskState.SCHEDULED
    assert ops["set_task_state"]["fields"] == {"error": REASON, "max_tries": 3}
    assert harness.scheduler.advance(tx) == [] and run.state is RunState.RUNNING

    late = harness.scheduler.finish(ti, SUCCESS, tx)  # the killed try's outcome comes in late
    assert late is None and ti.state is TaskState.SCHEDULED
    assert harness.scheduler.slots_used == 0

    started = harness.scheduler.allocate(Transitions(101.0))
    assert started == [ti] and ti.try_number == 2  # a new try, on a slot of the pool again
    assert harness.scheduler.pool_used["gpu"] == 1


async def test_interrupt_leaves_an_instance_that_is_not_running_alone() -> None:
    harness = Harness()
    run = harness.queue(chain_dag("done"))
    harness.step()
    second = instance(run, "second")  # still waiting for `first`
    tx = Transitions(100.0)

    harness.scheduler.interrupt(second, REASON, tx)

    assert not tx.batch and second.state is TaskState.NONE


async def test_an_interrupted_try_of_a_run_being_cancelled_is_cancelled() -> None:
    harness = Harness()
    run = harness.queue(chain_dag("cancelled"))
    harness.step()
    ti = instance(run, "first")
    tx = Transitions(100.0)
    harness.scheduler.cancel(run, tx)

    harness.scheduler.interrupt(ti, REASON, tx)

    assert ti.state is TaskState.CANCELLED and ti.max_tries == 2
    assert harness.scheduler.advance(tx) == [run] and run.state is RunState.CANCELLED


async def test_an_interrupted_resume_keeps_its_event_and_its_tries() -> None:
    harness = Harness()
    run = harness.queue(chain_dag("resumed"))
    harness.step()
    ti = instance(run, "first")
    ti.next_call = {"target": "finish", "kwargs": {}, "event": {"path": "x.csv"}}
    tx = Transitions(100.0)

    harness.scheduler.interrupt(ti, REASON, tx)

    assert ti.state is TaskState.SCHEDULED and ti.max_tries == 2  # it resumes in the same try
    assert ti.next_call["event"] == {"path": "x.csv"}


async def test_an_interrupted_try_runs_again_after_a_restart_with_its_retries_intact(
    make_settings: SettingsFactory,
) -> None:
    started = anyio.Event()
    calls: list[int] = []

    with DAG("long") as dag:

        @task(retries=1, retry_delay=0)
        async def crunch() -> str:
            calls.append(len(calls) + 1)
            if len(calls) == 1:
                started.set()
                await anyio.sleep_forever()  # until the daemon kills it at shutdown
            if len(calls) == 2:
                raise RuntimeError("flaky")  # the one retry it has is still there for this
            return "done"

        crunch()

    settings = make_settings()
    async with Engine.open(settings, dagbag=bag_of(dag)) as engine:
        run_id = await engine.trigger("long")
        with anyio.fail_after(10):
            await started.wait()
        await shut_down(engine, run_id, "crunch")
        row = (await engine.store.list_task_instances(run_id))[0]
        tries = await engine.store.list_tries(run_id, "crunch")
        run = await engine.store.get_run(run_id)
    assert (row.state, row.max_tries, row.error) == (TaskState.SCHEDULED, 3, REASON)
    assert [(t.try_number, t.state, t.error) for t in tries] == [(1, TaskState.FAILED, REASON)]
    assert run is not None and run.state is RunState.RUNNING

    async with Engine.open(settings, dagbag=bag_of(dag)) as engine:
        with anyio.fail_after(10):
            record = await engine.wait(run_id)
        row = (await engine.store.list_task_instances(run_id))[0]
        tries = await engine.store.list_tries(run_id, "crunch")
    assert record.state is RunState.SUCCESS
    assert (row.try_number, row.max_tries) == (3, 3)
    assert [(t.state, t.error) for t in tries] == [
        (TaskState.FAILED, REASON),
        (TaskState.UP_FOR_RETRY, "RuntimeError: flaky"),
        (TaskState.SUCCESS, None),
    ]


async def shut_down(engine: Engine, run_id: str, task_id: str) -> None:
    """What the daemon does at shutdown: drain, then interrupt the try still running."""
    scheduler = engine.scheduler
    scheduler.draining = True
    ti = scheduler.instance((run_id, task_id, -1))
    assert ti is not None and ti.state is TaskState.RUNNING
    tx = Transitions(engine.clock.now())
    scheduler.interrupt(ti, REASON, tx)
    await engine.store.commit(tx.batch)
    assert scheduler.slots_used == 0 and scheduler.pool_used["default"] == 0
