"""Every pipeline in examples/ runs here, on worker processes, the way users run it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest

from orchestrator.config import Settings
from orchestrator.execution.results import decode_result
from orchestrator.loading.dagbag import load_dag_bag
from orchestrator.scheduling.engine import Engine
from orchestrator.state import RunState, TaskState

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
pytestmark = pytest.mark.slow


async def run_example(
    settings: Settings, dag_id: str, conf: dict[str, Any] | None = None
) -> tuple[RunState, dict[str, Any], dict[str, TaskState]]:
    async with Engine.open(settings, dagbag=load_dag_bag(EXAMPLES)) as engine:
        with anyio.fail_after(120):
            run_id = await engine.trigger(dag_id, conf)
            record = await engine.wait(run_id)
        results = await engine.store.get_results(run_id)
        instances = await engine.store.list_task_instances(run_id)
    values = {task_id: decode_result(text) for (task_id, _), text in results.items()}
    return record.state, values, {ti.task_id: ti.state for ti in instances}


def test_every_example_file_loads_cleanly() -> None:
    bag = load_dag_bag(EXAMPLES)
    assert bag.errors == []
    assert {"ml_training", "ml_training_on_arrival", "linear_chain", "fan_out_fan_in"} <= set(
        bag.dags
    )


async def test_ml_training_registers_and_promotes_only_better_models(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    settings = make_settings(in_process=False)
    conf = {"data_dir": str(tmp_path / "data"), "registry_dir": str(tmp_path / "models")}
    state, results, _ = await run_example(settings, "ml_training", conf)
    assert state is RunState.SUCCESS
    first = results["deploy"]
    assert first["version"] == "v0001" and first["promoted"] is True
    assert 0.9 < first["f1"] <= 1.0
    assert Path(first["model_path"]).is_file()
    registry = tmp_path / "models" / "ml_training"
    assert json.loads((registry / "current.json").read_text())["version"] == "v0001"

    # The same data again gives the same score: registered as v0002, not promoted.
    state, results, _ = await run_example(settings, "ml_training", conf)
    assert state is RunState.SUCCESS
    assert results["deploy"]["version"] == "v0002"
    assert results["deploy"]["promoted"] is False
    assert json.loads((registry / "current.json").read_text())["version"] == "v0001"
    assert sorted(p.name for p in registry.glob("v*")) == ["v0001", "v0002"]


async def test_ml_training_refuses_bad_data_and_deploys_nothing(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    bad = tmp_path / "bad.csv"
    rows = [f"{i},{i * 2},{i % 2}" for i in range(60)]
    rows[10] = "10,,0"
    bad.write_text("a,b,target\n" + "\n".join(rows) + "\n")
    conf = {
        "path": str(bad),
        "data_dir": str(tmp_path / "data"),
        "registry_dir": str(tmp_path / "models"),
    }
    state, _, states = await run_example(make_settings(in_process=False), "ml_training", conf)
    assert state is RunState.FAILED
    assert states["validate"] is TaskState.FAILED
    assert states["deploy"] is TaskState.UPSTREAM_FAILED
    assert not (tmp_path / "models").exists()


async def test_linear_chain(make_settings: Callable[..., Settings]) -> None:
    state, results, _ = await run_example(
        make_settings(in_process=False), "linear_chain", {"rows": 4}
    )
    assert state is RunState.SUCCESS
    assert results["load"] == {"rows": 4, "total": 0 + 1 + 4 + 9 + 4}
    assert results["report"].startswith("report for run ")


async def test_fan_out_fan_in(make_settings: Callable[..., Settings]) -> None:
    state, results, _ = await run_example(
        make_settings(in_process=False), "fan_out_fan_in", {"shards": 6}
    )
    assert state is RunState.SUCCESS
    assert results["combine"] == {"shards": 6, "total": 10 * sum(range(6))}


def test_the_readme_run_command_trains_and_reports_the_model(tmp_path: Path) -> None:
    """`make run` runs exactly this; a newcomer sees where the model went and its metric."""
    environment = {**os.environ, "ORCHESTRATOR_STATE_DIR": str(tmp_path / "state")}
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "orchestrator.cli",
            "run",
            "ml_training",
            "--dags-folder",
            str(EXAMPLES),
        ],
        cwd=tmp_path,
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert "model_path" in completed.stdout
    assert "f1" in completed.stdout
    assert (tmp_path / "models" / "ml_training" / "v0001" / "model.joblib").is_file()


async def test_ml_training_on_arrival_waits_for_a_csv_then_trains(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    """The first task is a file sensor: no slot is held until the CSV lands by rename."""
    from sklearn.datasets import load_breast_cancer

    incoming = tmp_path / "incoming"
    incoming.mkdir()
    # `incoming_dir` comes from the run's conf, so it must be under an allowed root.
    settings = make_settings(in_process=False, allowed_roots=(tmp_path,))
    conf = {
        "incoming_dir": str(incoming),
        "data_dir": str(tmp_path / "data"),
        "registry_dir": str(tmp_path / "models"),
    }
    async with Engine.open(settings, dagbag=load_dag_bag(EXAMPLES)) as engine:
        with anyio.fail_after(120):
            run_id = await engine.trigger("ml_training_on_arrival", conf)
            async with engine.subscribe() as changes:
                async for change in changes:
                    if getattr(change, "task_id", "") == "landed":
                        assert change.state in (TaskState.SCHEDULED, TaskState.DEFERRED)
                        if change.state is TaskState.DEFERRED:
                            break
            assert engine.scheduler.slots_used == 0
            data = load_breast_cancer()
            staging = tmp_path / "batch.csv.tmp"
            header = [name.replace(" ", "_") for name in data.feature_names]
            rows = [[*row, label] for row, label in zip(data.data, data.target, strict=True)]
            staging.write_text(
                ",".join([*header, "target"])
                + "\n"
                + "".join(",".join(map(str, row)) + "\n" for row in rows)
            )
            os.replace(staging, incoming / "batch-001.csv")
            record = await engine.wait(run_id)
        results = await engine.store.get_results(run_id)
    assert record.state is RunState.SUCCESS
    landed = decode_result(results[("landed", -1)])
    assert landed["name"] == "batch-001.csv"
    assert decode_result(results[("deploy", -1)])["promoted"] is True


def test_ml_retrain_on_new_data_under_the_daemon_trains_on_a_copied_csv(tmp_path: Path) -> None:
    """The README's promise: `orchestrator daemon`, then `cp batch.csv data/incoming/`."""
    import shutil
    import sqlite3

    from crashkit import DaemonProcess, new_marker, wait_until
    from sklearn.datasets import load_breast_cancer

    (tmp_path / "data" / "incoming").mkdir(parents=True)
    data = load_breast_cancer()
    header = [name.replace(" ", "_") for name in data.feature_names]
    batch = tmp_path / "new_batch.csv"
    batch.write_text(
        ",".join([*header, "target"])
        + "\n"
        + "".join(
            ",".join(map(str, [*row, label])) + "\n"
            for row, label in zip(data.data, data.target, strict=True)
        )
    )
    state = tmp_path / "state"
    database = state / "orchestrator.db"

    def runs() -> list[tuple[str, str, str]]:
        with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as connection:
            sql = "SELECT run_id, state, conf FROM runs WHERE dag_id = 'ml_retrain_on_new_data'"
            return list(connection.execute(sql))

    with DaemonProcess(state, EXAMPLES, marker=new_marker(), cwd=tmp_path) as daemon:
        daemon.wait_ready(60)
        shutil.copy(batch, tmp_path / "data" / "incoming" / "new_batch.csv")  # a plain `cp`
        finished = wait_until(
            lambda: [run for run in runs() if run[1] in ("success", "failed")],
            120,
            "the training run started by the copied CSV to finish",
        )
        daemon.terminate()
        assert daemon.wait_exit(60) == 0, daemon.log_text()
    assert len(finished) == 1 and finished[0][1] == "success", daemon.log_text()
    conf = json.loads(finished[0][2])
    assert conf["path"] == str(tmp_path / "data" / "incoming" / "new_batch.csv")
    assert conf["size"] == batch.stat().st_size
    registry = tmp_path / "models" / "ml_retrain_on_new_data"
    current = json.loads((registry / "current.json").read_text())
    assert current["run_id"] == finished[0][0]
