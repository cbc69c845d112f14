"""A try's context: the run's fields and the instance's, the same as the run's own context."""

from __future__ import annotations

import pytest

from orchestrator import DAG, task
from orchestrator.authoring.context import TaskContext
from orchestrator.scheduling.active_runs import ActiveRun, DagPlan, TaskInstance
from orchestrator.state import RunState, TaskState
from orchestrator.store.records import RunRecord


def test_a_try_context_carries_the_run_and_the_instance() -> None:
    with DAG("ctx", params={"size": 1}) as dag:

        @task
        def work() -> None: ...

        work()
    record = RunRecord(
        run_id="r1",
        dag_id="ctx",
        state=RunState.RUNNING,
        conf={"size": 2, "other": 3},
        queued_at=1.0,
        logical_date=10.0,
        data_interval_end=20.0,
    )
    run = ActiveRun(record, dag, DagPlan.of(dag))
    ti = TaskInstance(
        run=run, task=dag.tasks["work"], map_index=4, state=TaskState.QUEUED, priority=1
    )
    ti.try_number, ti.max_tries = 2, 3

    context = ti.context("logs/work.log")

    assert context == run.context(
        task_id="work", map_index=4, try_number=2, max_tries=3, log_path="logs/work.log"
    )
    assert (context.dag_id, context.run_id, context.params) == ("ctx", "r1", {"size": 2})
    assert (context.logical_date, context.data_interval_end) == (10.0, 20.0)
    assert context.conf == {"size": 2, "other": 3}


def test_an_instance_key_and_the_result_view_follow_the_run() -> None:
    """Made once per instance and per run, they read the same as made on each call did."""
    with DAG("view") as dag:

        @task
        def work() -> None: ...

        work()
    record = RunRecord(run_id="r2", dag_id="view", state=RunState.RUNNING, conf={}, queued_at=1.0)
    run = ActiveRun(record, dag, DagPlan.of(dag))
    ti = TaskInstance(
        run=run, task=dag.tasks["work"], map_index=3, state=TaskState.NONE, priority=1
    )
    assert (ti.key, ti.task_id) == (("r2", "work", 3), "work")
    view = run.result_view()
    assert dict(view) == {}
    run.results.setdefault("work", {})[1] = "b"
    run.results["work"][0] = "a"
    run.results["single"] = {-1: 7}
    assert run.result_view() is view  # the same live view, reading results as they are now
    assert dict(view) == {"work": ["a", "b"], "single": 7}


def test_a_context_made_quickly_is_the_dataclass_it_was() -> None:
    """`TaskContext` is made once per sensor armed, through `quick_init`: same defaults (a fresh
    `conf` and `params` each), same refusal of an unknown field, same equality and JSON."""
    first = TaskContext(dag_id="d", run_id="r", task_id="t")
    second = TaskContext(dag_id="d", run_id="r", task_id="t")
    assert first == second and first.conf == {} and first.conf is not second.conf
    assert first.params is not second.params and (first.map_index, first.try_number) == (-1, 1)
    assert TaskContext.from_json(first.to_json()) == first
    with pytest.raises(TypeError, match="bogus"):
        TaskContext.from_json({**first.to_json(), "bogus": 1})
