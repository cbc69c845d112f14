"""Airflow `Param` schemas are checked when a run is triggered, by every way of triggering."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from airflowkit import DAGS, run_dag
from apikit import serving

from orchestrator.config import Settings
from orchestrator.errors import RunError
from orchestrator.loading.dagbag import load_dag_bag
from orchestrator.scheduling.engine import Engine
from orchestrator.state import RunState

SettingsFactory = Callable[..., Settings]


async def test_a_good_conf_runs_with_the_defaults_for_the_rest(
    make_settings: SettingsFactory,
) -> None:
    state, values, _ = await run_dag(make_settings(), "validated_params", {"batch_size": 5})
    assert state is RunState.SUCCESS
    assert values["plan"] == {"batch_size": 5, "mode": "full", "note": "anything goes"}


@pytest.mark.parametrize(
    ("conf", "field", "why"),
    [
        ({"batch_size": 0}, "batch_size", "less than the minimum of 1"),
        ({"batch_size": "ten"}, "batch_size", "is not of type 'integer'"),
        ({"mode": "partial"}, "mode", "is not one of ['full', 'incremental']"),
    ],
)
async def test_the_engine_refuses_a_conf_that_breaks_a_param_naming_it(
    make_settings: SettingsFactory, conf: dict[str, object], field: str, why: str
) -> None:
    async with Engine.open(make_settings(), dagbag=load_dag_bag(DAGS)) as engine:
        with pytest.raises(RunError) as caught:
            await engine.trigger("validated_params", conf)
        assert await engine.store.list_runs(dag_id="validated_params") == []
    message = str(caught.value)
    assert f"Invalid input for param {field}" in message
    assert why in message
    assert "validated_params" in message


async def test_the_api_answers_400_naming_the_param(make_settings: SettingsFactory) -> None:
    dags = load_dag_bag(DAGS).dags.values()
    async with serving(make_settings(), *dags) as served:
        answer = await served.client.post(
            "/api/v1/dags/validated_params/runs",
            json={"conf": {"mode": "partial"}},
            headers=served.auth("trigger"),
        )
        good = await served.client.post(
            "/api/v1/dags/validated_params/runs",
            json={"conf": {"mode": "incremental"}},
            headers=served.auth("trigger"),
        )
    assert answer.status_code == 400, answer.text
    assert "Invalid input for param mode" in answer.json()["error"]["message"]
    assert good.status_code == 201, good.text
