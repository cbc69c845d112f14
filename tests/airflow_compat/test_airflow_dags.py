"""Airflow DAG files, unchanged, loaded and run by our engine with the results Airflow gives."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import anyio
import pytest
from airflowkit import DAGS, run_dag, until_runs_of

from orchestrator.config import Settings
from orchestrator.loading.dagbag import load_dag_bag
from orchestrator.scheduling.engine import Engine
from orchestrator.state import RunState, TaskState


def test_every_dag_file_loads_and_only_the_unsupported_import_fails() -> None:
    bag = load_dag_bag(DAGS)
    assert {"ml_pipeline", "taskflow_etl", "branching", "bash_xcom", "fail_without_retry"} <= set(
        bag.dags
    )
    assert len(bag.errors) == 1
    error = bag.errors[0]
    assert error.file is not None and error.file.endswith("unsupported_provider.py")
    assert error.line == 2
    assert "airflow.providers.amazon.aws.operators.s3" in error.message
    assert "standard-provider" in error.message
    assert not any(name == "airflow" or name.startswith("airflow.") for name in sys.modules)


def test_the_schedule_comes_from_schedule_interval_and_start_date() -> None:
    pipeline = load_dag_bag(DAGS).dags["ml_pipeline"]
    assert pipeline.starts.schedule_text == "@daily (UTC)"
    assert pipeline.starts.start == 1704067200.0


@pytest.mark.parametrize("in_process", [True, False], ids=["in-process", "workers"])
async def test_the_issue_snippet_runs_in_order(
    make_settings: Callable[..., Settings], in_process: bool
) -> None:
    state, _, states = await run_dag(make_settings(in_process=in_process), "ml_pipeline")
    assert state is RunState.SUCCESS
    assert states == {"ingest": TaskState.SUCCESS, "preprocess": TaskState.SUCCESS}


async def test_taskflow_passes_values_maps_and_injects_context(
    make_settings: Callable[..., Settings],
) -> None:
    state, values, states = await run_dag(make_settings(), "taskflow_etl", {"multiplier": 3})
    assert state is RunState.SUCCESS, states
    assert values["double"] == {0: 3, 1: 6, 2: 9}
    assert values["load"] == {
        "total": 6,
        "count": 3,
        "doubled": [3, 6, 9],
        "task": "load",
        "has_ds": True,
        "multiplier": 3,
    }


async def test_branch_short_circuit_groups_and_trigger_rules(
    make_settings: Callable[..., Settings],
) -> None:
    state, values, states = await run_dag(make_settings(), "branching")
    assert state is RunState.SUCCESS, states
    assert states["small"] is TaskState.SUCCESS
    assert states["large"] is TaskState.SKIPPED
    assert states["join"] is TaskState.SUCCESS
    assert states["checks.first"] is TaskState.SUCCESS
    assert states["checks.second"] is TaskState.SUCCESS
    assert states["after_gate"] is TaskState.SKIPPED
    # the gate's default (ignore_downstream_trigger_rules=True) skips all_done tasks below too
    assert states["cleanup"] is TaskState.SKIPPED
    assert values["small"] == "small path"


async def test_bash_templates_and_xcom_keys(make_settings: Callable[..., Settings]) -> None:
    state, values, states = await run_dag(make_settings(in_process=False), "bash_xcom")
    assert state is RunState.SUCCESS, states
    assert states["skipped"] is TaskState.SKIPPED
    assert values["echo"] == "hello world 2024-01-09"
    assert values["pull"] == {
        "color": "blue",
        "returned": "pushed",
        "echo": "hello world 2024-01-09",
        "rendered": "8",
    }


async def test_airflow_fail_exception_fails_without_a_retry(
    make_settings: Callable[..., Settings],
) -> None:
    async with Engine.open(make_settings(in_process=False), dagbag=load_dag_bag(DAGS)) as engine:
        with anyio.fail_after(60):
            record = await engine.wait(await engine.trigger("fail_without_retry"))
        instances = {ti.task_id: ti for ti in await engine.store.list_task_instances(record.run_id)}
    assert record.state is RunState.SUCCESS  # Airflow's rule: the leaves decide, and alert ran
    assert instances["validate"].state is TaskState.FAILED
    assert (instances["validate"].try_number, instances["validate"].max_tries) == (1, 4)
    assert "the input file has no header" in (instances["validate"].error or "")
    assert instances["alert"].state is TaskState.SUCCESS


def test_orchestrator_run_runs_the_issue_snippet(tmp_path: Path) -> None:
    """`orchestrator run ml_pipeline` on the unchanged file, through the command line."""
    from click.testing import CliRunner

    from orchestrator.cli import cli

    dags = tmp_path / "dags"
    dags.mkdir()
    (dags / "ml_pipeline.py").write_bytes((DAGS / "ml_pipeline.py").read_bytes())
    where = ["--state-dir", str(tmp_path / "state"), "--dags-folder", str(dags)]
    result = CliRunner().invoke(cli, ["run", "ml_pipeline", *where], prog_name="orchestrator")
    assert result.exit_code == 0, (result.stdout, result.stderr)


async def test_a_list_or_and_of_assets_waits_for_all_and_or_runs_on_each(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings()
    bag = load_dag_bag(DAGS)
    async with Engine.open(settings, dagbag=bag, start_runs=True) as engine:
        with anyio.fail_after(60):
            for producer in ("produce_orders", "produce_orders", "produce_customers"):
                await engine.wait(await engine.trigger(producer))
            runs = await until_runs_of(engine, {"on_list": 1, "on_and": 1, "on_or": 3})
    for dag_id in ("on_list", "on_and"):
        [run] = runs[dag_id]
        assert [event["asset"] for event in run.conf["events"]] == [
            "s3://lake/orders",
            "s3://lake/orders",
            "s3://lake/customers",
        ]
    assert [run.conf["asset"] for run in runs["on_or"]] == [
        "s3://lake/orders",
        "s3://lake/orders",
        "s3://lake/customers",
    ]
    assert {run.state for each in runs.values() for run in each} == {RunState.SUCCESS}
