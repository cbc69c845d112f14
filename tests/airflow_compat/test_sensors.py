"""Airflow's sensors on the native waits: file and time sensors wait without a slot (deferred),
a sensor in reschedule mode gives its slot back between pokes."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import anyio
from airflowkit import DAGS, DEADLINE, outcome
from startkit import NapClock, land

from orchestrator.config import Settings
from orchestrator.loading.dagbag import load_dag_bag
from orchestrator.scheduling.engine import Engine
from orchestrator.state import RunState, TaskState

SettingsFactory = Callable[..., Settings]


async def until_state(engine: Engine, run_id: str, task_id: str, state: TaskState) -> None:
    with anyio.fail_after(DEADLINE):
        while True:
            _, states = await outcome(engine, run_id)
            if states.get(task_id) is state:
                return
            await anyio.lowlevel.checkpoint()


async def test_a_file_sensor_waits_deferred_until_the_file_lands(
    make_settings: SettingsFactory, tmp_path: Path
) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    settings = make_settings(in_process=False)
    async with Engine.open(settings, dagbag=load_dag_bag(DAGS)) as engine:
        run_id = await engine.trigger("file_sensor", {"inbox": str(inbox)})
        await until_state(engine, run_id, "landed", TaskState.DEFERRED)
        land(inbox, "orders.csv", "42 orders\n")
        with anyio.fail_after(DEADLINE):
            run = await engine.wait(run_id)
        values, states = await outcome(engine, run_id)
    assert run.state is RunState.SUCCESS, states
    assert states == {"landed": TaskState.SUCCESS, "process": TaskState.SUCCESS}
    assert values["process"] == "42 orders"


async def test_time_sensors_wait_on_the_engine_clock_and_soft_fail_skips(
    make_settings: SettingsFactory,
) -> None:
    clock = NapClock()
    async with Engine.open(make_settings(), dagbag=load_dag_bag(DAGS), clock=clock) as engine:
        run_id = await engine.trigger("time_sensors")
        await until_state(engine, run_id, "past_moment", TaskState.SUCCESS)
        await until_state(engine, run_id, "hour_later", TaskState.DEFERRED)
        await until_state(engine, run_id, "too_late", TaskState.DEFERRED)
        clock.advance(1800)
        await until_state(engine, run_id, "too_late", TaskState.SKIPPED)
        _, states = await outcome(engine, run_id)
        assert states["hour_later"] is TaskState.DEFERRED
        clock.advance(1800)
        with anyio.fail_after(DEADLINE):
            run = await engine.wait(run_id)
        values, states = await outcome(engine, run_id)
    assert run.state is RunState.SUCCESS, states
    assert states["hour_later"] is TaskState.SUCCESS
    assert values["report"] == "report"
    assert values.get("hour_later") is None


async def test_a_rescheduled_sensor_frees_its_only_slot_between_pokes(
    make_settings: SettingsFactory, tmp_path: Path
) -> None:
    settings = make_settings(in_process=False, slots=1)
    async with Engine.open(settings, dagbag=load_dag_bag(DAGS)) as engine:
        run_id = await engine.trigger("reschedule_sensor", {"folder": str(tmp_path)})
        with anyio.fail_after(DEADLINE):
            run = await engine.wait(run_id)
        _, states = await outcome(engine, run_id)
    assert run.state is RunState.SUCCESS, states
    assert (tmp_path / "marker").exists()
    assert len((tmp_path / "pokes").read_text().splitlines()) >= 2


async def test_an_external_task_sensor_waits_for_the_other_dags_task(
    make_settings: SettingsFactory,
) -> None:
    async with Engine.open(make_settings(), dagbag=load_dag_bag(DAGS)) as engine:
        reader = await engine.trigger("reader")
        await until_state(engine, reader, "wait_for_publish", TaskState.DEFERRED)
        publisher = await engine.trigger("publisher")
        with anyio.fail_after(DEADLINE):
            published = await engine.wait(publisher)
            read = await engine.wait(reader)
        values, states = await outcome(engine, reader)
    assert published.state is RunState.SUCCESS
    assert read.state is RunState.SUCCESS, states
    assert values["read"] == "read"


async def test_dagrun_timeout_fails_the_run_and_drops_its_deferred_sensor(
    make_settings: SettingsFactory,
) -> None:
    clock = NapClock()
    async with Engine.open(make_settings(), dagbag=load_dag_bag(DAGS), clock=clock) as engine:
        run_id = await engine.trigger("run_timeout")
        await until_state(engine, run_id, "slow", TaskState.DEFERRED)
        clock.advance(3599)
        _, states = await outcome(engine, run_id)
        assert states["slow"] is TaskState.DEFERRED  # not yet: an hour from the start
        clock.advance(1)
        with anyio.fail_after(DEADLINE):
            run = await engine.wait(run_id)
        instances = {ti.task_id: ti for ti in await engine.store.list_task_instances(run_id)}
        triggers = await engine.store.list_triggers()
    assert run.state is RunState.FAILED
    assert {task_id: ti.state for task_id, ti in instances.items()} == {
        "quick": TaskState.SUCCESS,
        "slow": TaskState.CANCELLED,
        "after": TaskState.CANCELLED,
    }
    assert "timed out (run_timeout): still running 3600 s" in (instances["slow"].error or "")
    assert triggers == []
