"""Airflow DAG files with `depends_on_past` (from `default_args`) and with `.as_setup()` /
`.as_teardown(setups=...)` on operators and TaskFlow calls (also as context managers), run on
the real engine to the outcomes Airflow's setup and teardown docs describe."""

from __future__ import annotations

from collections.abc import Callable

import anyio
import pytest
from airflowkit import DAGS, DEADLINE, outcome, run_dag
from rich.console import Console

from orchestrator.changes import TaskChanged
from orchestrator.cli.views import TaskDetail, run_view
from orchestrator.config import Settings
from orchestrator.loading.dagbag import load_dag_bag
from orchestrator.scheduling.engine import Engine
from orchestrator.state import RunState, TaskState

SettingsFactory = Callable[..., Settings]


async def test_depends_on_past_in_default_args_holds_a_run_until_the_previous_one_is_fixed(
    make_settings: SettingsFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIRFLOW_VAR_WAREHOUSE", "down")
    async with Engine.open(make_settings(), dagbag=load_dag_bag(DAGS)) as engine:
        with anyio.fail_after(DEADLINE):
            first = await engine.trigger("depends_on_past")
            failed = await engine.wait(first)
            async with engine.subscribe() as changes:
                second = await engine.trigger("depends_on_past")
                async for change in changes:
                    if isinstance(change, TaskChanged) and change.run_id == second and change.error:
                        break
            _, waiting = await outcome(engine, second)
            shown = await runs_show(engine, second)
            monkeypatch.setenv("AIRFLOW_VAR_WAREHOUSE", "up")
            await engine.clear(first, ["load"])
            fixed, done = await engine.wait(first), await engine.wait(second)
        values, _ = await outcome(engine, second)
    assert failed.state is RunState.FAILED  # the first run ran: it has no previous run
    assert change.task_id == "load" and change.state is TaskState.NONE
    assert change.error == f"waiting for the previous run's load ({first})"
    assert waiting == {"extract": TaskState.SUCCESS, "load": TaskState.NONE}
    assert f"waiting for the previous run's load ({first})" in shown
    assert (fixed.state, done.state) == (RunState.SUCCESS, RunState.SUCCESS)
    assert values["load"] == 42


async def runs_show(engine: Engine, run_id: str) -> str:
    """What `orchestrator runs show RUN` prints for the run."""
    record = await engine.store.get_run(run_id)
    assert record is not None
    rows = await engine.store.list_task_instances(run_id)
    console = Console(record=True, width=400)
    console.print(run_view(record, [TaskDetail(row, None) for row in rows]))
    return console.export_text()


def test_as_setup_and_as_teardown_mark_the_tasks_and_add_the_setup_edges() -> None:
    dag = load_dag_bag(DAGS).dags["setup_teardown_methods"]
    tasks = dag.tasks
    assert {t for t, task in tasks.items() if getattr(task, "is_setup", False)} == {
        "root_setup",
        "section_1.taskgroup_setup",
        "create_bucket",
        "grant_access",
    }
    teardowns = {t for t, task in tasks.items() if getattr(task, "is_teardown", False)}
    assert teardowns == {"root_teardown", "section_1.taskgroup_teardown", "delete_bucket"}
    assert {tasks[t].trigger_rule for t in teardowns} == {"all_done_setup_success"}
    assert tasks["delete_bucket"].upstream_task_ids == {
        "create_bucket",
        "grant_access",
        "fill_bucket",
    }
    assert "root_setup" in tasks["root_teardown"].upstream_task_ids
    # A teardown with on_failure_fail_dagrun is work: the tasks before it are no leaves.
    assert sorted(dag.leaves) == ["delete_bucket", "section_1.normal"]


@pytest.mark.parametrize(
    ("fail", "run_state", "failed"),
    [
        ("", RunState.SUCCESS, set()),
        ("work", RunState.FAILED, {"normal"}),  # the teardowns run all the same
        ("teardown", RunState.SUCCESS, {"root_teardown"}),  # a teardown's failure is ignored...
        ("strict_teardown", RunState.FAILED, {"delete_bucket"}),  # ...unless it says otherwise
    ],
)
async def test_teardowns_run_whatever_the_work_did_and_the_run_state_comes_from_the_work(
    make_settings: SettingsFactory, fail: str, run_state: RunState, failed: set[str]
) -> None:
    state, values, states = await run_dag(make_settings(), "setup_teardown_methods", {"fail": fail})
    assert state is run_state, states
    assert {t for t, s in states.items() if s is TaskState.FAILED} == failed
    if fail == "work":
        assert states["section_1.normal"] is TaskState.UPSTREAM_FAILED
        assert states["root_teardown"] is TaskState.SUCCESS
        # section_1 comes after the failed task: its setup never ran, nothing to tear down
        assert states["section_1.taskgroup_setup"] is TaskState.UPSTREAM_FAILED
        assert states["section_1.taskgroup_teardown"] is TaskState.UPSTREAM_FAILED
    if not fail:
        assert set(states.values()) == {TaskState.SUCCESS}
        assert values["delete_bucket"] == "deleted bucket-1"


def test_a_teardown_as_a_context_manager_wraps_the_work_made_inside_it() -> None:
    tasks = load_dag_bag(DAGS).dags["setup_teardown_scopes"].tasks
    upstream = {task_id: task.upstream_task_ids for task_id, task in tasks.items()}
    # with delete_cluster(cluster).as_teardown(setups=cluster): report(run_query(cluster), ...)
    assert upstream["count_rows"] == {"create_cluster"}  # a root of the work: after the setup
    assert upstream["run_query"] == {"create_cluster"}
    assert upstream["delete_cluster"] == {"create_cluster", "report"}  # after the work's leaf
    # with start_warehouse.as_setup() >> stop_warehouse.as_teardown(...): BashOperator(...)
    assert upstream["load"] == {"start_warehouse"}
    assert upstream["stop_warehouse"] == {"start_warehouse", "load"}
    assert tasks["stop_warehouse"].trigger_rule == "all_done_setup_success"


def test_a_group_before_a_task_leaves_its_teardown_out() -> None:
    tasks = load_dag_bag(DAGS).dags["setup_teardown_scopes"].tasks
    # cache >> publish: the teardown cache.drop runs beside publish, not before it
    assert tasks["publish"].upstream_task_ids == {"cache.use"}
    assert tasks["cache.drop"].upstream_task_ids == {"cache.warm", "cache.use"}


async def test_a_failed_setup_fails_its_work_and_its_teardown_and_the_run(
    make_settings: SettingsFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIRFLOW_VAR_CLUSTER", "down")
    state, _, states = await run_dag(make_settings(), "setup_teardown_scopes")
    assert state is RunState.FAILED
    assert states["create_cluster"] is TaskState.FAILED
    work = ("run_query", "count_rows", "report")
    assert {states[t] for t in work} == {TaskState.UPSTREAM_FAILED}
    assert states["delete_cluster"] is TaskState.UPSTREAM_FAILED  # no cluster to delete
    assert states["stop_warehouse"] is TaskState.SUCCESS  # another setup's scope


async def test_clearing_failed_work_runs_its_setup_again_then_the_teardown(
    make_settings: SettingsFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIRFLOW_VAR_QUERY", "bad")
    async with Engine.open(make_settings(), dagbag=load_dag_bag(DAGS)) as engine:
        run_id = await engine.trigger("setup_teardown_scopes")
        with anyio.fail_after(DEADLINE):
            failed = await engine.wait(run_id)
        _, first = await outcome(engine, run_id)
        monkeypatch.setenv("AIRFLOW_VAR_QUERY", "ok")  # the query is fixed: clear it
        with anyio.fail_after(DEADLINE):
            cleared = await engine.clear(run_id, ["run_query"])
            fixed = await engine.wait(run_id)
        values, states = await outcome(engine, run_id)
    assert failed.state is RunState.FAILED  # with the work, not with the teardown
    assert (first["run_query"], first["report"]) == (TaskState.FAILED, TaskState.UPSTREAM_FAILED)
    assert first["delete_cluster"] is TaskState.SUCCESS  # the cluster was made: it is deleted
    assert {key[1] for key in cleared} == {
        "create_cluster",  # in the scope of run_query: its teardown is downstream of it
        "run_query",
        "report",
        "delete_cluster",
    }
    assert fixed.state is RunState.SUCCESS
    assert set(states.values()) == {TaskState.SUCCESS}
    assert values["run_query"] == "rows from cluster-2"  # the setup ran again first
    assert values["report"] == "3 rows from cluster-2"
    assert values["delete_cluster"] == "deleted cluster-2"
