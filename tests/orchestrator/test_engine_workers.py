"""Task code that crashes, exits, hangs or floods fails its own task, never the engine."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path

import anyio
import pytest

from orchestrator.config import Settings
from orchestrator.loading.dagbag import load_dag_bag
from orchestrator.scheduling.engine import Engine
from orchestrator.state import RunState, TaskState

pytestmark = pytest.mark.slow

HOSTILE = textwrap.dedent(
    """
    import ctypes, os, sys, time
    from orchestrator import DAG, task

    @task
    def segfault() -> None:
        ctypes.string_at(0)

    @task
    def hard_exit() -> None:
        os._exit(7)

    @task
    def soft_exit() -> None:
        sys.exit(3)

    @task(execution_timeout=0.5)
    def hangs() -> None:
        time.sleep(3600)

    @task
    def too_big() -> str:
        return "x" * 100_000

    @task(trigger_rule="all_done")
    def survivor() -> str:
        print("still here")
        return "alive"

    with DAG("hostile"):
        [segfault(), hard_exit(), soft_exit(), hangs(), too_big()] >> survivor()
    """
)


async def test_hostile_tasks_fail_alone_and_the_run_goes_on(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    dags = tmp_path / "dags"
    dags.mkdir()
    (dags / "hostile.py").write_text(HOSTILE)
    settings = make_settings(in_process=False, dags_folder=dags)
    async with Engine.open(settings, dagbag=load_dag_bag(dags)) as engine:
        with anyio.fail_after(60):
            record = await engine.wait(await engine.trigger("hostile"))
        instances = {ti.task_id: ti for ti in await engine.store.list_task_instances(record.run_id)}
        tries = await engine.store.list_tries(record.run_id, "survivor")
    errors = {task_id: ti.error for task_id, ti in instances.items()}
    assert "SIGSEGV" in (errors["segfault"] or "")
    assert "exit code 7" in (errors["hard_exit"] or "")
    assert "sys.exit(3)" in (errors["soft_exit"] or "")
    assert "timed out after 0.5" in (errors["hangs"] or "")
    assert "result_max_bytes" in (errors["too_big"] or "")
    assert instances["survivor"].state is TaskState.SUCCESS
    assert "still here" in Path(tries[-1].log_path).read_text()
    assert record.state is RunState.SUCCESS  # the leaf ran: all_done does not care how
