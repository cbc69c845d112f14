"""Alerts for what the engine sees go wrong while waiting: a run trigger's error, a sensor's
timeout. Each makes exactly one outbox row and one delivery to a loopback receiver."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from alertkit import alerts_of, sending, slack_settings
from httpserver import Reply, serve
from startkit import NapClock, settle, starting_engine, until, until_source_error, until_true

from orchestrator import DAG, task
from orchestrator.alertconfig import AlertRule
from orchestrator.config import Settings
from orchestrator.state import RunState, TaskState
from orchestrator.store.alertrows import AlertRecord
from sensors import FileSensor
from triggers import FileTrigger

SettingsFactory = Callable[..., Settings]


async def test_a_run_trigger_that_errors_alerts_once(
    make_settings: SettingsFactory, tmp_path: Path
) -> None:
    missing = tmp_path / "not-yet"
    with DAG("ingest", run_on=FileTrigger(directory=str(missing), pattern="*.csv")) as dag:

        @task(in_process=True)
        def consume() -> None:
            pass

        consume()
    settings = slack_settings(make_settings, AlertRule(on=("trigger_error",), channels=("ops",)))
    with serve() as http:
        http.script("/slack", Reply.json({"ok": True}))
        async with (
            starting_engine(settings, dag, clock=NapClock()) as engine,
            sending(engine, f"{http.url}/slack"),
        ):
            await until_source_error(engine, "ingest")
            await until_true(lambda: http.hits("/slack") == 1)
            await settle(engine)  # the trigger waits for its backoff: no second error yet
            alerts = await alerts_of(engine, "trigger_error")
    assert len(alerts) == 1 and http.hits("/slack") == 1
    (alert,) = alerts
    assert alert.dag_id == "ingest" and f"the directory {missing} does not exist" in alert.summary
    assert "trigger error: DAG ingest" in http.requests[0].body.decode()


async def test_a_sensor_that_times_out_alerts_once_as_sensor_timeout(
    make_settings: SettingsFactory, tmp_path: Path
) -> None:
    with DAG("landing") as dag:
        FileSensor(task_id="landed", directory=str(tmp_path), pattern="*.csv", timeout=60)
    settings = slack_settings(make_settings, AlertRule(on=("sensor_timeout",), channels=("ops",)))
    clock = NapClock()
    with serve() as http:
        http.script("/slack", Reply.json({"ok": True}))
        async with (
            starting_engine(settings, dag, clock=clock) as engine,
            sending(engine, f"{http.url}/slack"),
        ):
            run_id = await engine.trigger("landing")

            async def deferred() -> bool:
                instances = await engine.store.list_task_instances(run_id)
                return any(ti.state is TaskState.DEFERRED for ti in instances)

            await until(deferred)
            clock.advance(60)
            assert (await engine.wait(run_id)).state is RunState.FAILED
            await until_true(lambda: http.hits("/slack") == 1)
            await settle(engine)
            alerts: list[AlertRecord] = await alerts_of(engine, "sensor_timeout")
    assert len(alerts) == 1 and http.hits("/slack") == 1
    (alert,) = alerts
    assert (alert.dag_id, alert.task_id, alert.run_id) == ("landing", "landed", run_id)
    assert "TriggerTimeoutError: no event within 60s" in alert.summary
