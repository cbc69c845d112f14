"""Airflow DAG files with `depends_on_past` (from `default_args`) and with `.as_setup()` /
`.as_teardown(setups=...)` on operators and TaskFlow calls, run on the real engine."""

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
    assert {tasks[t].trigger_rule for t in teardowns} == {"all_done"}
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
        assert states["section_1.taskgroup_teardown"] is TaskState.SUCCESS  # its setup ran
    if not fail:
        assert set(states.values()) == {TaskState.SUCCESS}
        assert values["delete_bucket"] == "deleted bucket-1"
