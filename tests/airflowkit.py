"""Running the Airflow DAG files of tests/airflow_compat/dags on our engine, and reading back."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio

from orchestrator.config import Settings
from orchestrator.execution.results import decode_result
from orchestrator.loading.dagbag import load_dag_bag
from orchestrator.scheduling.engine import Engine
from orchestrator.state import RunState, TaskState
from orchestrator.store.records import RunRecord

DAGS = Path(__file__).resolve().parent / "airflow_compat" / "dags"
DEADLINE = 60


async def run_dag(
    settings: Settings, dag_id: str, conf: dict[str, Any] | None = None
) -> tuple[RunState, dict[str, Any], dict[str, TaskState]]:
    """Trigger the DAG, wait for its run; its state, results by task, task states."""
    async with Engine.open(settings, dagbag=load_dag_bag(DAGS)) as engine:
        with anyio.fail_after(DEADLINE):
            run_id = await engine.trigger(dag_id, conf)
            record = await engine.wait(run_id)
        values, states = await outcome(engine, run_id)
        if record.state is not RunState.SUCCESS:
            await print_failures(engine, run_id)
    return record.state, values, states


async def print_failures(engine: Engine, run_id: str) -> None:
    """Each unsuccessful task's error and the end of its last try's log, for pytest to show
    beside a failing assertion (a task that fails only under load says why)."""
    for ti in await engine.store.list_task_instances(run_id):
        if ti.state is TaskState.SUCCESS:
            continue
        print(f"{ti.task_id}[{ti.map_index}] {ti.state}: {ti.error}")
        tries = await engine.store.list_tries(run_id, ti.task_id, ti.map_index)
        if tries and tries[-1].log_path and Path(tries[-1].log_path).exists():
            tail = Path(tries[-1].log_path).read_text(errors="replace")[-2000:]
            print(f"  last log lines of try {tries[-1].try_number}:\n{tail}")


async def outcome(engine: Engine, run_id: str) -> tuple[dict[str, Any], dict[str, TaskState]]:
    """A run's results by task (mapped ones by map index) and its task states."""
    results = await engine.store.get_results(run_id)
    instances = await engine.store.list_task_instances(run_id)
    values: dict[str, Any] = {}
    for (task_id, map_index), text in results.items():
        if map_index >= 0:
            values.setdefault(task_id, {})[map_index] = decode_result(text)
        else:
            values[task_id] = decode_result(text)
    return values, {ti.task_id: ti.state for ti in instances}


async def until_runs_of(engine: Engine, counts: dict[str, int]) -> dict[str, list[RunRecord]]:
    """Wait until each DAG has its count of finished runs (oldest first); fail on more."""

    async def runs_of(dag_id: str) -> list[RunRecord]:
        runs = await engine.store.list_runs(dag_id=dag_id, limit=1000)
        return sorted(runs, key=lambda run: (run.queued_at, run.run_id))

    with anyio.fail_after(DEADLINE):
        while True:
            found = {dag_id: await runs_of(dag_id) for dag_id in counts}
            done = all(run.state.finished for runs in found.values() for run in runs)
            if done and all(len(found[dag_id]) >= count for dag_id, count in counts.items()):
                break
            await anyio.lowlevel.checkpoint()
    assert {dag_id: len(runs) for dag_id, runs in found.items()} == counts
    return found
