"""A task joining after a skipped or failed upstream receives None for its output, as in Airflow."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anyio
import pytest

from helpers import bag_of
from orchestrator import DAG, Skip, TriggerRule, task
from orchestrator.config import Settings
from orchestrator.execution.results import decode_result
from orchestrator.scheduling.engine import Engine
from orchestrator.state import TaskState


@task
def kept() -> dict[str, int]:
    return {"rows": 3}


@task
def skipped() -> dict[str, int]:
    raise Skip("nothing to do today")


@task
def failed() -> dict[str, int]:
    raise ValueError("bad input")


@task
def join(first: Any, second: Any, rows: Any) -> list[Any]:
    return [first, second, rows]


@pytest.mark.parametrize(
    ("rule", "upstream"),
    [
        (TriggerRule.ALL_DONE, skipped),
        (TriggerRule.NONE_FAILED, skipped),
        (TriggerRule.ONE_SUCCESS, skipped),
        (TriggerRule.ALL_DONE, failed),
    ],
)
async def test_the_output_of_an_upstream_without_a_result_is_none(
    make_settings: Callable[..., Settings], rule: TriggerRule, upstream: Any
) -> None:
    with DAG("joins") as dag:
        missing = upstream()
        join.override(trigger_rule=rule)(kept(), missing, missing["rows"])
    async with Engine.open(make_settings(), dagbag=bag_of(dag)) as engine:
        with anyio.fail_after(20):
            run_id = await engine.trigger("joins")
            await engine.wait(run_id)
        instances = {ti.task_id: ti.state for ti in await engine.store.list_task_instances(run_id)}
        results = await engine.store.get_results(run_id)
    assert instances["join"] is TaskState.SUCCESS, instances
    assert decode_result(results[("join", -1)]) == [{"rows": 3}, None, None]
