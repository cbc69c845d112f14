"""TriggerDagRunOperator on the native `trigger_run`: in the engine and under `orchestrator run`."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import anyio
from airflowkit import DAGS, DEADLINE, outcome

from orchestrator.config import Settings
from orchestrator.loading.dagbag import load_dag_bag
from orchestrator.scheduling.engine import Engine
from orchestrator.state import RunState, TaskState

SettingsFactory = Callable[..., Settings]


async def test_the_controller_waits_for_the_triggered_run_and_pulls_its_id(
    make_settings: SettingsFactory,
) -> None:
    settings = make_settings(in_process=False, slots=1)
    async with Engine.open(settings, dagbag=load_dag_bag(DAGS)) as engine:
        with anyio.fail_after(DEADLINE):
            record = await engine.wait(await engine.trigger("trigger_controller"))
        values, states = await outcome(engine, record.run_id)
        target_id = values["after"]
        target = await engine.store.get_run(target_id)
        target_values, _ = await outcome(engine, target_id)
    # One slot: the target's task ran while `trigger` waited deferred.
    assert record.state is RunState.SUCCESS, states
    assert target is not None and target.state is RunState.SUCCESS
    assert target.conf == {"message": "hello from trigger_controller"}
    assert target_values["greet"] == f"hello from trigger_controller (run {target_id})"


async def test_a_triggered_run_in_a_failed_state_fails_the_waiting_task(
    make_settings: SettingsFactory,
) -> None:
    async with Engine.open(make_settings(), dagbag=load_dag_bag(DAGS)) as engine:
        with anyio.fail_after(DEADLINE):
            record = await engine.wait(await engine.trigger("trigger_failing"))
        instances = await engine.store.list_task_instances(record.run_id)
        targets = await engine.store.list_runs(dag_id="trigger_target", limit=10)
    assert record.state is RunState.FAILED
    assert instances[0].state is TaskState.FAILED
    assert "ended in failed" in (instances[0].error or "")
    assert [run.state for run in targets] == [RunState.FAILED]


def test_orchestrator_run_runs_the_controller_and_its_target(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from orchestrator.cli import cli

    dags = tmp_path / "dags"
    dags.mkdir()
    (dags / "trigger_dagrun.py").write_bytes((DAGS / "trigger_dagrun.py").read_bytes())
    where = ["--state-dir", str(tmp_path / "state"), "--dags-folder", str(dags)]
    conf = ["--conf", '{"greeting": "hi"}']
    result = CliRunner().invoke(
        cli, ["run", "trigger_controller", *conf, *where], prog_name="orchestrator"
    )
    assert result.exit_code == 0, (result.stdout, result.stderr)
    listing = CliRunner().invoke(
        cli, ["runs", "list", "--dag", "trigger_target", "--json", *where], prog_name="orchestrator"
    )
    assert [run["state"] for run in json.loads(listing.stdout)] == ["success"]
