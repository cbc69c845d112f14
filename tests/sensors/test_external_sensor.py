"""ExternalTaskSensor through the real engine: DAG B waits on DAG A's task, event-driven.

Both DAGs run in one engine on a FakeClock that never moves, so the sensor's periodic store
read (every 60 s of that clock) never happens: only the engine's change feed can wake it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sensorkit import (
    SettingsFactory,
    engine_for,
    instance,
    results_of,
    states_of,
    until_state,
)
from triggerkit import GateTrigger, open_gate

from orchestrator import DAG, Defer, task
from orchestrator.clock import FakeClock
from orchestrator.errors import DagError
from orchestrator.state import RunState, TaskState
from sensors import ExternalTaskSensor


def features_dag(*, fail: bool = False) -> DAG:
    """DAG A: `publish` finishes when the test opens the gate "publish" (or fails at once)."""
    with DAG("features") as pipeline:

        @task
        def publish() -> Defer:
            if fail:
                raise ValueError("the feature table is corrupt")
            return Defer(GateTrigger(name="publish"))

        publish()
    return pipeline


def training_dag() -> DAG:
    """DAG B: waits for A's `publish`, then trains with the event the sensor got."""
    with DAG("training") as pipeline:
        ready = ExternalTaskSensor(
            task_id="features_ready", external_dag_id="features", external_task_id="publish"
        )

        @task
        def train(event: dict[str, Any]) -> str:
            return f"trained on run {event['run_id']} of {event['dag_id']} ({event['state']})"

        train(ready.output)
    return pipeline


async def test_the_sensor_fires_when_the_other_dags_task_succeeds(
    make_settings: SettingsFactory,
) -> None:
    clock = FakeClock()
    async with engine_for(make_settings(), features_dag(), training_dag(), clock=clock) as engine:
        waiting = await engine.trigger("training")  # before any run of A exists
        await until_state(engine, waiting, "features_ready", TaskState.DEFERRED)
        upstream = await engine.trigger("features")
        await until_state(engine, upstream, "publish", TaskState.DEFERRED)
        assert (await states_of(engine, waiting))["features_ready"] is TaskState.DEFERRED
        assert engine.scheduler.slots_used == 0
        open_gate("publish", {"rows": 10})
        record = await engine.wait(waiting)
        results = await results_of(engine, waiting)
        assert (await engine.wait(upstream)).state is RunState.SUCCESS

    assert clock.now() == FakeClock().now()  # no time passed: the change feed woke the sensor
    assert record.state is RunState.SUCCESS
    assert results["features_ready"] == {
        "dag_id": "features",
        "run_id": upstream,
        "task_id": "publish",
        "map_index": -1,
        "state": "success",
    }
    assert results["train"] == f"trained on run {upstream} of features (success)"


async def test_a_task_that_already_succeeded_fires_the_sensor_at_once(
    make_settings: SettingsFactory,
) -> None:
    async with engine_for(
        make_settings(), features_dag(), training_dag(), clock=FakeClock()
    ) as engine:
        upstream = await engine.trigger("features")
        await until_state(engine, upstream, "publish", TaskState.DEFERRED)
        open_gate("publish")
        assert (await engine.wait(upstream)).state is RunState.SUCCESS
        waiting = await engine.trigger("training")
        record = await engine.wait(waiting)
        results = await results_of(engine, waiting)

    assert record.state is RunState.SUCCESS
    assert results["features_ready"]["run_id"] == upstream


async def test_the_sensor_fails_with_the_reason_when_the_other_task_fails(
    make_settings: SettingsFactory,
) -> None:
    async with engine_for(
        make_settings(), features_dag(fail=True), training_dag(), clock=FakeClock()
    ) as engine:
        waiting = await engine.trigger("training")
        await until_state(engine, waiting, "features_ready", TaskState.DEFERRED)
        upstream = await engine.trigger("features")
        assert (await engine.wait(upstream)).state is RunState.FAILED
        record = await engine.wait(waiting)
        sensor = await instance(engine, waiting, "features_ready")
        states = await states_of(engine, waiting)

    assert record.state is RunState.FAILED
    assert sensor is not None and sensor.state is TaskState.FAILED
    assert sensor.error == (
        "trigger ExternalRunTrigger failed: TriggerError: task publish of run"
        f" {upstream} (DAG features) ended in failed"
    )
    assert states["train"] is TaskState.UPSTREAM_FAILED


async def test_a_task_the_other_run_never_has_fails_the_sensor(
    make_settings: SettingsFactory,
) -> None:
    with DAG("typo") as pipeline:
        ExternalTaskSensor(task_id="wait", external_dag_id="features", external_task_id="publsh")

    async with engine_for(make_settings(), features_dag(), pipeline, clock=FakeClock()) as engine:
        waiting = await engine.trigger("typo")
        await until_state(engine, waiting, "wait", TaskState.DEFERRED)
        upstream = await engine.trigger("features")
        await until_state(engine, upstream, "publish", TaskState.DEFERRED)
        open_gate("publish")
        await engine.wait(upstream)
        assert (await engine.wait(waiting)).state is RunState.FAILED
        sensor = await instance(engine, waiting, "wait")

    assert sensor is not None
    assert f"task publsh of run {upstream} (DAG features) does not exist" in (sensor.error or "")
    assert "check task_id and map_index" in (sensor.error or "")


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"allowed_states": ("done",)}, "states names 'done', which is not a task instance state"),
        (
            {"allowed_states": ("success",), "failed_states": ("success",)},
            "success is in both states and failed_states",
        ),
        ({"external_dag_id": ""}, "dag_id must be a non-empty string"),
        ({"check_interval": 0}, "check_interval must be a number of seconds above 0"),
    ],
)
def test_bad_arguments_are_a_dag_error_at_the_sensor_line(
    arguments: dict[str, Any], message: str
) -> None:
    given = {"external_dag_id": "features", "external_task_id": "publish", **arguments}
    with DAG("bad"), pytest.raises(DagError, match=message) as raised:
        ExternalTaskSensor(task_id="bad", **given)

    error = raised.value
    assert error.file == __file__ and error.line is not None
    assert "ExternalTaskSensor(" in Path(__file__).read_text().splitlines()[error.line - 1]
