"""Setup and teardown tasks on the engine: the `all_done_setup_success` rule, and what a clear
takes along (Airflow's setup "scope"), with tasks marked `is_setup` / `is_teardown`."""

from __future__ import annotations

from collections.abc import Callable

import anyio
import pytest

from helpers import bag_of
from orchestrator import DAG, Skip, task
from orchestrator.config import Settings
from orchestrator.execution.results import decode_result
from orchestrator.scheduling.clear_scope import cleared_task_ids
from orchestrator.scheduling.engine import Engine
from orchestrator.state import RunState, TaskState

SettingsFactory = Callable[..., Settings]
DEADLINE = 20


def cluster_dag(setup_does: str = "", work_does: str = "") -> tuple[DAG, list[str]]:
    """create >> work >> delete, create >> delete: a setup, its work and its teardown.

    Each appends its name to the returned list when it runs.
    """
    ran: list[str] = []

    @task
    def create() -> str:
        ran.append("create")
        if setup_does == "fail":
            raise ValueError("no capacity for a cluster")
        if setup_does == "skip":
            raise Skip("no cluster needed")
        return f"cluster-{ran.count('create')}"

    @task
    def work(cluster: str) -> str:
        ran.append("work")
        if work_does == "fail" and ran.count("work") == 1:
            raise ValueError(f"the job on {cluster} failed")
        return f"job on {cluster}"

    @task(trigger_rule="all_done_setup_success")
    def delete(cluster: str) -> str:
        ran.append("delete")
        return f"deleted {cluster}"

    with DAG("cluster") as dag:
        cluster = create()
        teardown = delete(cluster)
        work(cluster) >> teardown
        cluster.task.is_setup = True
        teardown.task.is_teardown = True
    return dag, ran


async def run_states(settings: Settings, dag: DAG) -> tuple[RunState, dict[str, TaskState]]:
    async with Engine.open(settings, dagbag=bag_of(dag)) as engine:
        with anyio.fail_after(DEADLINE):
            record = await engine.wait(await engine.trigger(dag.dag_id))
        rows = await engine.store.list_task_instances(record.run_id)
    return record.state, {row.task_id: row.state for row in rows}


@pytest.mark.parametrize(
    ("setup_does", "work_does", "expected"),
    [
        # the work failed, but the cluster exists: it is deleted all the same
        ("", "fail", (TaskState.SUCCESS, TaskState.FAILED, TaskState.SUCCESS)),
        # no cluster was made: nothing to delete, and the failure goes through as in Airflow
        ("fail", "", (TaskState.FAILED, TaskState.UPSTREAM_FAILED, TaskState.UPSTREAM_FAILED)),
        ("skip", "", (TaskState.SKIPPED, TaskState.SKIPPED, TaskState.SKIPPED)),
    ],
)
async def test_a_teardown_runs_when_its_setup_succeeded_whatever_the_work_did(
    make_settings: SettingsFactory,
    setup_does: str,
    work_does: str,
    expected: tuple[TaskState, ...],
) -> None:
    dag, ran = cluster_dag(setup_does, work_does)
    _, states = await run_states(make_settings(), dag)
    assert (states["create"], states["work"], states["delete"]) == expected
    assert ("delete" in ran) is (expected[2] is TaskState.SUCCESS)


async def test_clearing_the_work_runs_its_setup_again_before_it_then_the_teardown(
    make_settings: SettingsFactory,
) -> None:
    dag, ran = cluster_dag(work_does="fail")
    async with Engine.open(make_settings(), dagbag=bag_of(dag)) as engine:
        with anyio.fail_after(DEADLINE):
            run_id = await engine.trigger("cluster")
            await engine.wait(run_id)
            cleared = await engine.clear(run_id, ["work"], downstream=False)
            fixed = await engine.wait(run_id)
        results = await engine.store.get_results(run_id)
    assert sorted(key[1] for key in cleared) == ["create", "delete", "work"]
    assert fixed.state is RunState.SUCCESS
    assert ran == ["create", "work", "delete", "create", "work", "delete"]  # work failed once
    assert decode_result(results[("work", -1)]) == "job on cluster-2"
    assert decode_result(results[("delete", -1)]) == "deleted cluster-2"


def scope_dag() -> DAG:
    """Airflow's docs' example: s1 >> w1 >> w2 >> t1.as_teardown(setups=s1) >> w3; w2 >> w4."""

    @task
    def step() -> None:
        return None

    with DAG("scope") as dag:
        s1, w1, w2, t1, w3, w4 = (
            step.override(task_id=name)() for name in "s1 w1 w2 t1 w3 w4".split()
        )
        s1 >> w1 >> w2 >> t1 >> w3
        w2 >> w4
        s1 >> t1
        s1.task.is_setup = True
        t1.task.is_teardown = True
    return dag


@pytest.mark.parametrize(
    ("named", "downstream", "cleared"),
    [
        (["w1"], False, {"s1", "w1", "t1"}),  # w1 and w2 sit between s1 and t1: they need s1
        (["w2"], False, {"s1", "w2", "t1"}),
        (["w2"], True, {"s1", "w2", "t1", "w3", "w4"}),
        (["w3"], False, {"w3"}),  # after the teardown: neither s1 nor t1
        (["w4"], True, {"w4"}),  # w4 has no teardown below it
        (["s1"], False, {"s1", "t1"}),  # a setup takes its teardown along
        (["t1"], False, {"t1"}),
    ],
)
def test_clearing_a_task_clears_the_setups_in_its_scope_and_their_teardowns(
    named: list[str], downstream: bool, cleared: set[str]
) -> None:
    assert cleared_task_ids(scope_dag(), named, downstream=downstream) == cleared


def test_a_setup_without_teardowns_is_cleared_with_any_task_after_it() -> None:
    dag = scope_dag()
    dag.tasks["t1"].is_teardown = False
    assert cleared_task_ids(dag, ["w3"], downstream=False) == {"s1", "w3"}
