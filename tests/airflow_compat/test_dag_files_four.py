"""A fourth set of Airflow DAG files with Airflow's documented outcome: catchup and LatestOnly in
scheduled runs, branching to a group, short-circuit trigger rules, a DAG paused on creation,
pools and priority, retries with backoff, execution timeouts, skips, the Airflow 3 SDK."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import anyio
import pytest
from airflowkit import DAGS, DEADLINE, outcome, run_dag, until_runs_of

from orchestrator.airflow_compat import dag as compat_dag
from orchestrator.clock import FakeClock
from orchestrator.config import Settings
from orchestrator.loading.dagbag import load_dag_bag
from orchestrator.scheduling.engine import Engine
from orchestrator.state import RunState, TaskState
from orchestrator.store.records import TaskInstanceRecord

SettingsFactory = Callable[..., Settings]
JAN_10_2024 = datetime(2024, 1, 10, 6, tzinfo=UTC).timestamp()


def day(text: str) -> float:
    return datetime.fromisoformat(f"{text}T00:00:00+00:00").timestamp()


async def instance(engine: Engine, run_id: str, task_id: str) -> TaskInstanceRecord:
    [found] = [ti for ti in await engine.store.list_task_instances(run_id) if ti.task_id == task_id]
    return found


async def until_try(engine: Engine, run_id: str, state: TaskState, try_number: int) -> float:
    """Wait until `flaky` is in `state` after try `try_number`; its next_retry_at."""
    with anyio.fail_after(DEADLINE):
        while True:
            for ti in await engine.store.list_task_instances(run_id):
                if ti.state is state and ti.try_number == try_number:
                    return ti.next_retry_at or 0.0
            await anyio.lowlevel.checkpoint()


async def test_catchup_runs_every_missed_daily_interval_oldest_first(
    make_settings: SettingsFactory,
) -> None:
    clock = FakeClock(JAN_10_2024)
    bag = load_dag_bag(DAGS)
    async with Engine.open(make_settings(), dagbag=bag, clock=clock, start_runs=True) as engine:
        found = await until_runs_of(engine, {"catchup_daily": 3})
        runs = sorted(found["catchup_daily"], key=lambda run: run.logical_date or 0)
        values = [(await outcome(engine, run.run_id))[0]["report"] for run in runs]
    assert [run.logical_date for run in runs] == [
        day("2024-01-01"),
        day("2024-01-02"),
        day("2024-01-03"),
    ]
    assert [value["ds"] for value in values] == ["2024-01-01", "2024-01-02", "2024-01-03"]
    assert values[0]["start"].startswith("2024-01-01T00:00:00")
    assert values[0]["end"].startswith("2024-01-02T00:00:00")
    assert {(run.state, run.run_type) for run in runs} == {(RunState.SUCCESS, "scheduled")}


async def test_latest_only_runs_downstream_in_the_latest_scheduled_interval_only(
    make_settings: SettingsFactory,
) -> None:
    bag = load_dag_bag(DAGS)
    async with Engine.open(make_settings(), dagbag=bag, start_runs=True) as engine:
        found = await until_runs_of(engine, {"latest_only_scheduled": 3})
        runs = sorted(found["latest_only_scheduled"], key=lambda run: run.logical_date or 0)
        states = [(await outcome(engine, run.run_id))[1] for run in runs]
    assert [each["publish"] for each in states] == [
        TaskState.SKIPPED,
        TaskState.SKIPPED,
        TaskState.SUCCESS,
    ]
    assert {each["archive"] for each in states} == {TaskState.SUCCESS}


async def test_a_branch_returning_a_group_id_runs_that_group(
    make_settings: SettingsFactory,
) -> None:
    state, values, states = await run_dag(make_settings(), "branch_to_group")
    assert state is RunState.SUCCESS, states
    assert values["pick"] == ["heavy.split"]
    assert (states["heavy.split"], states["heavy.merge"]) == (TaskState.SUCCESS,) * 2
    assert states["light.copy"] is TaskState.SKIPPED
    assert states["done"] is TaskState.SUCCESS
    assert values["heavy.merge"] == "merged"


async def test_short_circuit_without_ignoring_trigger_rules_lets_all_done_run(
    make_settings: SettingsFactory,
) -> None:
    state, values, states = await run_dag(make_settings(), "short_circuit_rules")
    assert state is RunState.SUCCESS, states
    assert states == {
        "gate": TaskState.SUCCESS,
        "load": TaskState.SKIPPED,
        "report": TaskState.SUCCESS,
    }
    assert values["report"] == "reported"


async def test_short_circuit_by_default_skips_every_task_downstream_whatever_its_rule(
    make_settings: SettingsFactory,
) -> None:
    state, _, states = await run_dag(make_settings(), "short_circuit_default")
    assert state is RunState.SUCCESS, states
    assert states == {
        "gate": TaskState.SUCCESS,
        "load": TaskState.SKIPPED,
        "report": TaskState.SKIPPED,
        "audit": TaskState.SKIPPED,
    }


async def test_a_dag_paused_upon_creation_loads_paused_and_starts_nothing(
    make_settings: SettingsFactory,
) -> None:
    bag = load_dag_bag(DAGS)
    async with Engine.open(make_settings(), dagbag=bag, start_runs=True) as engine:
        dags = {record.dag_id: record for record in await engine.store.list_dags()}
        assert dags["paused_on_creation"].is_paused
        assert not dags["ml_pipeline"].is_paused
        await engine.set_paused("paused_on_creation", False)
        runs = await until_runs_of(engine, {"paused_on_creation": 1})
    assert runs["paused_on_creation"][0].run_type == "scheduled"
    async with Engine.open(make_settings(), dagbag=bag) as engine:  # a restart keeps the unpause
        dags = {record.dag_id: record for record in await engine.store.list_dags()}
    assert not dags["paused_on_creation"].is_paused


async def test_the_higher_priority_weight_takes_the_pools_only_slot_first(
    make_settings: SettingsFactory,
) -> None:
    settings = make_settings(pools={"single": 1})
    async with Engine.open(settings, dagbag=load_dag_bag(DAGS)) as engine:
        with anyio.fail_after(DEADLINE):
            record = await engine.wait(await engine.trigger("pool_priority"))
        high = await instance(engine, record.run_id, "high")
        low = await instance(engine, record.run_id, "low")
    assert record.state is RunState.SUCCESS
    assert (high.pool, low.pool) == ("single", "single")
    assert high.ended_at is not None and low.started_at is not None
    assert high.ended_at <= low.started_at


async def test_retries_back_off_exponentially_and_call_on_retry(
    make_settings: SettingsFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "calls"
    folder.mkdir()
    monkeypatch.setenv("AIRFLOW_VAR_CALLBACK_FOLDER", str(folder))
    clock = FakeClock()
    async with Engine.open(make_settings(), dagbag=load_dag_bag(DAGS), clock=clock) as engine:
        run_id = await engine.trigger("retry_backoff")
        assert await until_try(engine, run_id, TaskState.UP_FOR_RETRY, 1) == clock.now() + 1
        clock.advance(1)
        assert await until_try(engine, run_id, TaskState.UP_FOR_RETRY, 2) == clock.now() + 2
        clock.advance(2)
        with anyio.fail_after(DEADLINE):
            record = await engine.wait(run_id)
        values, states = await outcome(engine, run_id)
    assert record.state is RunState.SUCCESS, states
    assert values["flaky"] == "succeeded on try 3"
    assert sorted(path.name for path in folder.iterdir()) == ["retry-1", "retry-2"]
    assert (folder / "retry-2").read_text() == "RuntimeError: try 2 failed"


async def test_execution_timeout_fails_the_try_and_one_failed_runs(
    make_settings: SettingsFactory,
) -> None:
    state, values, states = await run_dag(make_settings(in_process=False), "execution_timeout")
    assert state is RunState.FAILED
    assert states == {
        "slow": TaskState.FAILED,
        "load": TaskState.UPSTREAM_FAILED,
        "alert": TaskState.SUCCESS,
    }
    assert values["alert"] == "paged"


async def test_a_skip_in_the_middle_of_a_chain_skips_what_follows(
    make_settings: SettingsFactory,
) -> None:
    state, values, states = await run_dag(make_settings(), "skip_mid_chain")
    assert state is RunState.SUCCESS, states
    assert states == {
        "extract": TaskState.SUCCESS,
        "check": TaskState.SKIPPED,
        "transform": TaskState.SKIPPED,
        "load": TaskState.SKIPPED,
        "summary": TaskState.SUCCESS,
    }
    assert values["extract"] == 3 and values["summary"] == "summarised"


async def test_the_airflow_3_sdk_imports_and_an_asset_across_two_dags(
    make_settings: SettingsFactory,
) -> None:
    bag = load_dag_bag(DAGS)
    async with Engine.open(make_settings(), dagbag=bag, start_runs=True) as engine:
        with anyio.fail_after(DEADLINE):
            produced = await engine.wait(await engine.trigger("sdk_producer", {"threshold": 7}))
        runs = await until_runs_of(engine, {"sdk_consumer": 1})
        produced_values, _ = await outcome(engine, produced.run_id)
        consumed_values, _ = await outcome(engine, runs["sdk_consumer"][0].run_id)
    assert produced_values["score"] == {"threshold": 7, "task": "score"}
    assert consumed_values["read"] == ["file:///data/scores.json"]
    with pytest.raises(ValueError, match="Invalid input for param threshold"):
        bag.dags["sdk_producer"].check_conf({"threshold": -1})


async def test_ignored_arguments_are_reported_and_max_active_tasks_holds(
    make_settings: SettingsFactory,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(compat_dag, "_reported", set())
    with caplog.at_level(logging.INFO, logger="orchestrator.airflow_compat"):
        bag = load_dag_bag(DAGS)
    for name in ("owner=", "max_active_tis_per_dag="):
        assert f"Airflow argument {name} is accepted and ignored" in caplog.text
    async with Engine.open(make_settings(), dagbag=bag) as engine:
        with anyio.fail_after(DEADLINE):
            record = await engine.wait(await engine.trigger("ignored_arguments"))
        values, _ = await outcome(engine, record.run_id)
    assert record.state is RunState.SUCCESS
    first, second = sorted([values["first"], values["second"]])
    assert first[1] <= second[0]  # one slot for the DAG: never at once


def test_a_dag_without_any_schedule_argument_is_manual_only() -> None:
    from orchestrator.airflow_compat.dag import DAG

    pipeline = DAG("no_schedule", start_date=datetime(2024, 1, 1, tzinfo=UTC))
    assert pipeline.starts.schedule is None and not pipeline.starts.triggers
