"""Airflow's timetables, from DAG files written after Airflow's docs: each run at the moment the
timetable says, with the `ds`, logical date and data interval Airflow documents; catchup with a
trigger timetable; AssetOrTimeSchedule and `triggering_asset_events`."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import pytest
from airflowkit import DAGS, DEADLINE, outcome, until_runs_of

from orchestrator.clock import FakeClock
from orchestrator.config import Settings
from orchestrator.errors import DagError
from orchestrator.loading.dagbag import load_dag_bag
from orchestrator.scheduling.engine import Engine
from orchestrator.state import RunState, TaskState
from orchestrator.store.records import RunRecord

SettingsFactory = Callable[..., Settings]


def moment(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


@asynccontextmanager
async def engine_at(settings: Settings, when: str) -> AsyncIterator[tuple[Engine, FakeClock]]:
    """An engine starting the runs of every DAG file, its clock at `when` (UTC)."""
    clock = FakeClock(moment(when))
    bag = load_dag_bag(DAGS)
    async with Engine.open(settings, dagbag=bag, clock=clock, start_runs=True) as engine:
        yield engine, clock


async def reports_at(
    settings: Settings, when: str, counts: dict[str, int]
) -> dict[str, list[dict[str, Any]]]:
    """Each DAG's `report` values once it has its count of runs, the clock at `when`."""
    async with engine_at(settings, when) as (engine, _):
        found = await until_runs_of(engine, counts)
        return {dag_id: await reports(engine, runs) for dag_id, runs in found.items()}


async def reports(engine: Engine, runs: list[RunRecord]) -> list[dict[str, Any]]:
    """The `report` task's value of each run, oldest logical date first."""
    ordered = sorted(runs, key=lambda run: run.logical_date or 0)
    assert {run.state for run in ordered} <= {RunState.SUCCESS}
    return [(await outcome(engine, run.run_id))[0]["report"] for run in ordered]


def exact(*ticks: str) -> list[dict[str, str]]:
    """What `report` gives for runs whose data interval is empty at each tick (UTC)."""
    return [
        {"ds": tick[:10], "logical_date": f"{tick}+00:00", "start": f"{tick}+00:00"}
        | {"end": f"{tick}+00:00"}
        for tick in ticks
    ]


async def test_trigger_timetables_run_at_each_tick_and_catch_up(
    make_settings: SettingsFactory,
) -> None:
    counts = {"cron_trigger": 3, "cron_trigger_interval": 3, "delta_trigger": 3}
    counts |= {"multiple_cron_trigger": 2}
    values = await reports_at(make_settings(), "2024-01-10T00:00:00", counts)
    # CronTriggerTimetable: a run at 06:00 each day, its data interval empty at 06:00.
    days = ("2024-01-01T06:00:00", "2024-01-02T06:00:00", "2024-01-03T06:00:00")
    assert values["cron_trigger"] == exact(*days)
    # interval=6 hours: the run at 06:00 covers 00:00-06:00, its logical date the start.
    assert values["cron_trigger_interval"] == [
        {
            "ds": day[:10],
            "logical_date": f"{day[:10]}T00:00:00+00:00",
            "start": f"{day[:10]}T00:00:00+00:00",
            "end": f"{day}+00:00",
        }
        for day in days
    ]
    assert values["delta_trigger"] == exact(
        "2024-01-01T00:00:00", "2024-01-01T12:00:00", "2024-01-02T00:00:00"
    )
    assert values["multiple_cron_trigger"] == exact("2024-01-01T06:00:00", "2024-01-01T18:30:00")


async def test_without_catchup_a_trigger_timetable_waits_for_its_next_tick(
    make_settings: SettingsFactory,
) -> None:
    """Watched from 07:00, the 06:00 tick is skipped unless run_immediately=True."""
    counts = {"cron_trigger_immediately": 1, "cron_trigger_waits": 0}
    values = await reports_at(make_settings(), "2024-01-01T07:00:00", counts)
    assert values == {
        "cron_trigger_immediately": exact("2024-01-01T06:00:00"),
        "cron_trigger_waits": [],
    }


async def test_a_trigger_timetable_starts_its_run_at_the_tick(
    make_settings: SettingsFactory,
) -> None:
    async with engine_at(make_settings(), "2024-01-01T05:00:00") as (engine, clock):
        runs = await engine.store.list_runs(dag_id="cron_trigger_waits", limit=10)
        assert runs == []
        clock.set(moment("2024-01-01T06:00:00"))
        found = await until_runs_of(engine, {"cron_trigger_waits": 1})
        [value] = await reports(engine, found["cron_trigger_waits"])
    assert value == exact("2024-01-01T06:00:00")[0]


async def test_data_interval_timetables_run_when_each_interval_ends(
    make_settings: SettingsFactory,
) -> None:
    counts = {"cron_data_interval": 2, "delta_data_interval": 2}
    values = await reports_at(make_settings(), "2024-01-10T00:00:00", counts)

    def interval(start: str, end: str) -> dict[str, str]:
        stamp = f"{start}+00:00"
        return {"ds": start[:10], "logical_date": stamp, "start": stamp, "end": f"{end}+00:00"}

    assert values["cron_data_interval"] == [
        interval("2024-01-01T00:00:00", "2024-01-02T00:00:00"),
        interval("2024-01-02T00:00:00", "2024-01-03T00:00:00"),
    ]
    assert values["delta_data_interval"] == [
        interval("2024-01-01T00:00:00", "2024-01-01T12:00:00"),
        interval("2024-01-01T12:00:00", "2024-01-02T00:00:00"),
    ]


async def test_events_timetable_runs_once_at_each_listed_moment(
    make_settings: SettingsFactory,
) -> None:
    schedule = load_dag_bag(DAGS).dags["match_days"].starts.schedule_text
    assert schedule == "Match days, a run at each tick"
    found = await reports_at(make_settings(), "2024-06-01T00:00:00", {"match_days": 3})
    values = found["match_days"]
    # London is on UTC until the end of March.
    ticks = ("2024-01-06T15:00:00", "2024-02-10T12:30:00", "2024-03-15T20:00:00")
    assert values == [
        {key: value for key, value in each.items() if key != "logical_date"}
        for each in exact(*ticks)
    ]


async def test_a_manual_run_covers_the_interval_its_timetable_infers(
    make_settings: SettingsFactory,
) -> None:
    """A trigger timetable's `interval` before the moment it was queued; restricted to events,
    the latest event. Its logical date is that moment, as Airflow's manual runs."""
    async with Engine.open(make_settings(), dagbag=load_dag_bag(DAGS)) as engine:
        with anyio.fail_after(DEADLINE):
            run_ids = [await engine.trigger(d) for d in ("cron_trigger_interval", "match_days")]
            for run_id in run_ids:
                assert (await engine.wait(run_id)).state is RunState.SUCCESS
        trigger, events = [(await outcome(engine, run_id))[0]["report"] for run_id in run_ids]
    queued = datetime.fromisoformat(trigger["logical_date"])
    assert datetime.fromisoformat(trigger["end"]) == queued
    assert datetime.fromisoformat(trigger["start"]) == queued - timedelta(hours=6)
    assert trigger["ds"] == queued.date().isoformat()
    latest_match = "2024-03-15T20:00:00+00:00"
    assert (events["start"], events["end"]) == (latest_match, latest_match)


async def test_asset_or_time_runs_on_its_timetable_and_reads_the_triggering_events(
    make_settings: SettingsFactory,
) -> None:
    async with engine_at(make_settings(), "2024-01-10T00:00:00") as (engine, _):
        await until_runs_of(engine, {"asset_or_time": 2})
        with anyio.fail_after(DEADLINE):
            producer = await engine.trigger("weather_producer")
            await engine.wait(producer)
        found = await until_runs_of(engine, {"asset_or_time": 3, "dataset_consumer": 1})
        runs = sorted(found["asset_or_time"], key=lambda run: run.logical_date or math.inf)
        results = [await outcome(engine, run.run_id) for run in runs]
        [(consumer, _)] = [await outcome(engine, run.run_id) for run in found["dataset_consumer"]]
    assert [run.run_type for run in runs] == ["scheduled", "scheduled", "event"]
    summaries = [values["summarize"] for values, _ in results]
    assert [(s["run_type"], s["ds"], s["events"]) for s in summaries[:2]] == [
        ("scheduled", "2024-01-01", {}),
        ("scheduled", "2024-01-02", {}),
    ]
    assert summaries[2]["run_type"] == "asset_triggered"
    assert summaries[2]["events"] == {
        "s3://lake/weather": [
            {
                "uri": "s3://lake/weather",
                "source_dag_id": "weather_producer",
                "source_task_id": "fetch_weather",
                "source_run_id": producer,
                "extra": {},
                "has_timestamp": True,
            }
        ]
    }
    templated = results[2][0]["templated"]
    assert templated == "s3://lake/weather from weather_producer.fetch_weather"
    assert {states["templated"] for _, states in results} == {TaskState.SUCCESS}
    assert consumer["count"] == {"s3://lake/weather": 1}


def test_a_custom_timetable_is_refused_at_its_line(tmp_path: Path) -> None:
    (tmp_path / "custom.py").write_text(
        "from airflow.timetables.base import Timetable\n"
        "\n"
        "\n"
        "class SunsetTimetable(Timetable):\n"
        "    pass\n"
    )
    bag = load_dag_bag(tmp_path)
    [error] = bag.errors
    assert isinstance(error, DagError)
    assert (error.file, error.line) == (str(tmp_path / "custom.py"), 4)
    assert "custom timetable 'SunsetTimetable' is not supported" in error.message


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("CronTriggerTimetable('0 25 * * *', timezone='UTC')", "hour field '25'"),
        ("CronTriggerTimetable('@daily', timezone='Europe/Pariss')", "did you mean"),
        ("DeltaTriggerTimetable(timedelta(0))", "at least 1 second"),
        ("EventsTimetable([])", "needs at least one"),
    ],
)
def test_a_bad_timetable_argument_is_named_at_its_line(
    tmp_path: Path, source: str, message: str
) -> None:
    (tmp_path / "bad.py").write_text(
        "from datetime import timedelta\n"
        "from airflow.sdk import CronTriggerTimetable, DeltaTriggerTimetable\n"
        "from airflow.timetables.events import EventsTimetable\n"
        f"schedule = {source}\n"
    )
    [error] = load_dag_bag(tmp_path).errors
    assert error.line == 4
    assert message in error.message
