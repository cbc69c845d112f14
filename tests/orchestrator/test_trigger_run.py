"""A task starts another DAG's run with `trigger_run`, in the engine and under `orchestrator run`.

The run is created with the outcome of the try that asked for it; waiting for it is a deferral
on `ExternalRunTrigger`, so the waiting task holds no slot.
"""

from __future__ import annotations

import json
import textwrap
from collections.abc import Callable
from pathlib import Path

import anyio
import pytest

from orchestrator import trigger_run
from orchestrator.config import Settings
from orchestrator.errors import OrchestratorError
from orchestrator.execution.results import decode_result
from orchestrator.loading.dagbag import load_dag_bag
from orchestrator.scheduling.engine import Engine
from orchestrator.state import RunState, TaskState

SettingsFactory = Callable[..., Settings]

DAGS = textwrap.dedent(
    """
    from orchestrator import DAG, Defer, get_current_context, task, trigger_run
    from triggers.external import ExternalRunTrigger

    @task
    def double() -> int:
        return get_current_context().conf["n"] * 2

    @task
    def start_child() -> str:
        return trigger_run("child", {"n": 21})

    @task
    def wait_for(run_id: str) -> Defer:
        trigger = ExternalRunTrigger(dag_id="child", run_id=run_id, check_interval=1)
        return Defer(trigger, resume=ended)

    def ended(event: dict) -> str:
        return f"{event['run_id']} {event['state']}"

    @task
    async def start_missing() -> str:
        return trigger_run("nowhere")

    with DAG("child"):
        double()

    with DAG("parent"):
        wait_for(start_child())

    with DAG("fire_and_forget"):
        start_child()

    with DAG("bad_parent"):
        start_missing()
    """
)


def _dags(tmp_path: Path) -> Path:
    dags = tmp_path / "dags"
    dags.mkdir()
    (dags / "family.py").write_text(DAGS)
    return dags


@pytest.mark.parametrize("in_process", [True, False], ids=["thread", "worker_process"])
async def test_a_task_starts_a_run_of_another_dag_and_waits_for_it_without_a_slot(
    make_settings: SettingsFactory, tmp_path: Path, in_process: bool
) -> None:
    dags = _dags(tmp_path)
    settings = make_settings(in_process=in_process, dags_folder=dags, slots=1)
    async with Engine.open(settings, dagbag=load_dag_bag(dags)) as engine:
        with anyio.fail_after(60):
            parent = await engine.wait(await engine.trigger("parent"))
        results = await engine.store.get_results(parent.run_id)
        child_id = decode_result(results[("start_child", -1)])
        child = await engine.store.get_run(child_id)
        child_results = await engine.store.get_results(child_id)
    # One slot: the child's task ran while wait_for was deferred, not holding it.
    assert parent.state is RunState.SUCCESS
    assert child is not None and child.dag_id == "child" and child.conf == {"n": 21}
    assert child.state is RunState.SUCCESS and child.run_type == "manual"
    assert decode_result(child_results[("double", -1)]) == 42
    assert decode_result(results[("wait_for", -1)]) == f"{child_id} success"


async def test_a_run_that_cannot_start_fails_the_try_that_asked_for_it(
    make_settings: SettingsFactory, tmp_path: Path
) -> None:
    dags = _dags(tmp_path)
    async with Engine.open(make_settings(dags_folder=dags), dagbag=load_dag_bag(dags)) as engine:
        with anyio.fail_after(60):
            record = await engine.wait(await engine.trigger("bad_parent"))
        instances = await engine.store.list_task_instances(record.run_id)
        runs = await engine.store.list_runs(limit=10)
    assert record.state is RunState.FAILED
    assert instances[0].state is TaskState.FAILED
    assert "cannot start a run of 'nowhere'" in (instances[0].error or "")
    assert [run.dag_id for run in runs] == ["bad_parent"]


def test_trigger_run_is_refused_outside_a_task_and_with_a_conf_that_is_not_json() -> None:
    with pytest.raises(OrchestratorError, match="outside a running task"):
        trigger_run("child")
    from orchestrator.authoring.context import TaskContext, task_context

    with task_context(TaskContext(dag_id="d", run_id="r", task_id="t")):
        with pytest.raises(OrchestratorError, match="JSON object of plain values"):
            trigger_run("child", {"when": object()})


def test_orchestrator_run_drives_the_runs_its_tasks_started(tmp_path: Path) -> None:
    """Under `orchestrator run` (no daemon, the state dir locked), the child run runs too."""
    from click.testing import CliRunner

    from orchestrator.cli import cli

    dags = _dags(tmp_path)
    where = ["--state-dir", str(tmp_path / "state"), "--dags-folder", str(dags)]
    for dag_id in ("parent", "fire_and_forget"):
        result = CliRunner().invoke(cli, ["run", dag_id, *where], prog_name="orchestrator")
        assert result.exit_code == 0, (result.stdout, result.stderr)
    # parent waited for its child inside the run; fire_and_forget's child may end after it,
    # and the command waits for it rather than leave it interrupted.
    listing = CliRunner().invoke(
        cli, ["runs", "list", "--dag", "child", "--json", *where], prog_name="orchestrator"
    )
    runs = json.loads(listing.stdout)
    assert [run["state"] for run in runs] == ["success", "success"], listing.stdout
