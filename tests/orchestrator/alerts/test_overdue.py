"""Proactive alerts on a real engine: a run late to start, a silent run trigger, a long run.

Time moves with the engine's clock; each alert is checked in the outbox (exactly one row) and
at a real Slack-format receiver on loopback (exactly one delivery).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
from alertkit import alerts_of, sending, slack_settings
from httpserver import Reply, serve
from startkit import (
    NapClock,
    clock_at,
    land,
    settle,
    starting_engine,
    until,
    until_runs,
    until_true,
)

from orchestrator import DAG, task
from orchestrator.alertconfig import AlertRule
from orchestrator.config import Settings
from orchestrator.scheduling.engine import Engine
from orchestrator.state import RunState
from orchestrator.store.alertrows import AlertRecord
from triggers import FileTrigger

SettingsFactory = Callable[..., Settings]


def holding_dag(dag_id: str, release: anyio.Event, **options: Any) -> DAG:
    """A DAG whose one task runs until the test sets `release`."""
    with DAG(dag_id, **options) as dag:

        @task(in_process=True)
        async def hold() -> None:
            await release.wait()

        hold()
    return dag


async def until_alerts(engine: Engine, event: str, count: int) -> list[AlertRecord]:
    async def check() -> list[AlertRecord] | None:
        alerts = await alerts_of(engine, event)
        return alerts if len(alerts) >= count else None

    return await until(check)


async def until_state(engine: Engine, run_id: str, state: RunState) -> None:
    async def check() -> bool:
        record = await engine.store.get_run(run_id)
        return record is not None and record.state is state

    await until(check)


async def test_a_run_longer_than_max_duration_alerts_once_even_after_a_restart(
    make_settings: SettingsFactory,
) -> None:
    release = anyio.Event()
    dag = holding_dag("slow", release)
    rule = AlertRule(on=("run_too_long",), dags=("slow",), channels=("ops",), max_duration=7200)
    settings = slack_settings(make_settings, rule)
    clock = NapClock()
    with serve() as http:
        http.script("/slack", Reply.json({"ok": True}))
        url = f"{http.url}/slack"
        async with starting_engine(settings, dag, clock=clock) as engine, sending(engine, url):
            run_id = await engine.trigger("slow")
            await until_state(engine, run_id, RunState.RUNNING)
            clock.advance(7199)
            await settle(engine)
            assert await alerts_of(engine, "run_too_long") == []
            clock.advance(1)
            [alert] = await until_alerts(engine, "run_too_long", 1)
            clock.advance(3600)
            await settle(engine)
            await until_true(lambda: http.hits("/slack") == 1)
        # A restart finds the same run still running, long past its limit: no second alert.
        async with starting_engine(settings, dag, clock=clock) as engine, sending(engine, url):
            await until_state(engine, run_id, RunState.RUNNING)
            await settle(engine)
            assert [a.alert_id for a in await alerts_of(engine, "run_too_long")] == [alert.alert_id]
            release.set()
            await until_state(engine, run_id, RunState.SUCCESS)
        assert http.hits("/slack") == 1
    assert alert.dag_id == "slow" and alert.run_id == run_id and alert.channel == "ops"
    assert "still running 7200 s after it started" in alert.summary
    assert run_id in http.requests[0].body.decode()


async def test_a_tick_held_back_by_max_active_runs_alerts_once_as_late(
    make_settings: SettingsFactory,
) -> None:
    release = anyio.Event()
    dag = holding_dag("hourly", release, schedule="@hourly", catchup=False, max_active_runs=1)
    rule = AlertRule(on=("run_late",), channels=("ops",), late_after=600)
    clock = clock_at("2026-03-10T12:30:00")
    with serve() as http:
        http.script("/slack", Reply.json({"ok": True}))
        settings = slack_settings(make_settings, rule)
        async with (
            starting_engine(settings, dag, clock=clock) as engine,
            sending(engine, f"{http.url}/slack"),
        ):
            [first] = await until_runs(engine, "hourly", 1, finished=False)  # 11:00, held
            clock.advance(30 * 60 + 599)  # the 13:00 tick came; its run cannot be created
            await settle(engine)
            assert await alerts_of(engine, "run_late") == []
            clock.advance(1)
            [alert] = await until_alerts(engine, "run_late", 1)
            release.set()  # the first run ends, the 12:00 run starts (late) and ends
            await until_runs(engine, "hourly", 2)
            await settle(engine)
            assert [a.alert_id for a in await alerts_of(engine, "run_late")] == [alert.alert_id]
            await until_true(lambda: http.hits("/slack") == 1)
    assert first.logical_date is not None
    assert alert.dag_id == "hourly" and alert.run_id is None
    assert "interval from 2026-03-10T12:00:00+00:00 has not started 600 s" in alert.summary
    assert "max_active_runs = 1" in alert.summary
    assert "DAG hourly" in http.requests[0].body.decode()


async def test_a_scheduled_run_queued_behind_a_manual_run_alerts_as_late_with_its_id(
    make_settings: SettingsFactory,
) -> None:
    release = anyio.Event()
    dag = holding_dag(
        "hourly", release, schedule="@hourly", start_date="2026-03-10T12:00:00", max_active_runs=1
    )
    rule = AlertRule(on=("run_late",), dags=("hour*",), channels=("ops",), late_after=600)
    clock = clock_at("2026-03-10T12:30:00")
    with serve() as http:
        http.script("/slack", Reply.json({"ok": True}))
        settings = slack_settings(make_settings, rule)
        async with (
            starting_engine(settings, dag, clock=clock) as engine,
            sending(engine, f"{http.url}/slack"),
        ):
            manual = await engine.trigger("hourly")
            await until_state(engine, manual, RunState.RUNNING)
            clock.advance(30 * 60)  # 13:00: the 12:00 run is created, and queued
            [_, queued] = await until_runs(engine, "hourly", 2, finished=False)
            clock.advance(600)
            [alert] = await until_alerts(engine, "run_late", 1)
            release.set()
            await until_runs(engine, "hourly", 2)
            await settle(engine)
            assert len(await alerts_of(engine, "run_late")) == 1
            await until_true(lambda: http.hits("/slack") == 1)
    assert queued.run_type == "scheduled" and alert.run_id == queued.run_id
    assert "(queued)" in alert.summary


async def test_a_run_trigger_silent_for_silent_for_alerts_once_per_silence(
    make_settings: SettingsFactory, tmp_path: Path
) -> None:
    inbox = tmp_path / "incoming"
    inbox.mkdir()
    with DAG("ingest", run_on=FileTrigger(directory=str(inbox), pattern="*.csv")) as dag:

        @task(in_process=True)
        def consume() -> None:
            pass

        consume()
    rule = AlertRule(on=("trigger_silent",), channels=("ops",), silent_for=3600)
    clock = NapClock()
    with serve() as http:
        http.script("/slack", Reply.json({"ok": True}))
        settings = slack_settings(make_settings, rule)
        async with (
            starting_engine(settings, dag, clock=clock) as engine,
            sending(engine, f"{http.url}/slack"),
        ):
            land(inbox, "a.csv")
            await until_runs(engine, "ingest", 1)
            clock.advance(3599)
            await settle(engine)
            assert await alerts_of(engine, "trigger_silent") == []
            clock.advance(1)
            [first] = await until_alerts(engine, "trigger_silent", 1)
            clock.advance(5 * 3600)  # still silent: the same silence, no second alert
            await settle(engine)
            assert len(await alerts_of(engine, "trigger_silent")) == 1
            land(inbox, "b.csv")  # it fires again ...
            await until_runs(engine, "ingest", 2)
            clock.advance(3600)  # ... and goes silent again
            [_, second] = await until_alerts(engine, "trigger_silent", 2)
            await until_true(lambda: http.hits("/slack") == 2)
            await settle(engine)
            assert len(await alerts_of(engine, "trigger_silent")) == 2
    assert first.dag_id == second.dag_id == "ingest"
    assert "has not fired for 3600 s" in first.summary
    assert second.created_at - first.created_at == 6 * 3600
    assert http.hits("/slack") == 2
