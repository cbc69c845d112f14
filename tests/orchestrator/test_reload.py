"""Reloading DAG files in a running engine, and mistakes in how a DAG says its runs start.

The DAG files are real files in the engine's DAGs folder, loaded by the engine itself; a
reload is `reload_file` (what the daemon's folder watch calls) or the watch itself.
"""

from __future__ import annotations

import json
import textwrap
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import pytest
from startkit import (
    BARRIER,
    NapClock,
    clock_at,
    land,
    runs_of,
    settle,
    until,
    until_pending,
    until_runs,
)

from orchestrator.config import Settings
from orchestrator.daemon.reload import follow_dag_folder, reload_file
from orchestrator.loading.importer import load_dag_file
from orchestrator.scheduling.engine import Engine

SettingsFactory = Callable[..., Settings]

BARRIER_FILE = f"""
from orchestrator import DAG, task

with DAG({BARRIER!r}):
    @task
    def mark() -> str:
        return "passed"

    mark()
"""

INGEST_FILE = """
from orchestrator import DAG, task
from triggers.file import FileTrigger

with DAG("ingest", run_on=FileTrigger(directory={inbox!r}, pattern="*.csv"){options}):
    @task
    def consume() -> str:
        return {version!r}

    consume()
"""

HOURLY_FILE = """
from orchestrator import DAG, task

with DAG("hourly", schedule={schedule!r}):
    @task
    def tick() -> str:
        return "tick"

    tick()
"""


def write(path: Path, source: str) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(source).lstrip("\n"))
    return str(path)


def ingest_source(inbox: Path, version: str, options: str = "") -> str:
    return INGEST_FILE.format(inbox=str(inbox), version=version, options=options)


@asynccontextmanager
async def folder_engine(settings: Settings, clock: NapClock | None = None) -> AsyncIterator[Engine]:
    """An engine loading the settings' DAGs folder (plus a barrier DAG), starting runs."""
    write(settings.dags_folder / "barrier.py", BARRIER_FILE)
    async with Engine.open(settings, clock=clock, start_runs=True) as engine:
        yield engine


async def result_of(engine: Engine, run_id: str, task_id: str) -> object:
    return json.loads((await engine.store.get_results(run_id))[(task_id, -1)])


@pytest.fixture
def inbox(tmp_path: Path) -> Path:
    path = tmp_path / "incoming"
    path.mkdir()
    return path


# -- reloading a changed file -------------------------------------------------------------------


async def test_a_changed_dag_file_is_used_for_the_runs_that_start_after_the_reload(
    make_settings: SettingsFactory, inbox: Path
) -> None:
    settings = make_settings()
    path = write(settings.dags_folder / "ingest.py", ingest_source(inbox, "v1"))
    elsewhere = inbox.parent / "elsewhere"
    elsewhere.mkdir()
    async with folder_engine(settings) as engine:
        land(inbox, "a.csv")
        [first] = await until_runs(engine, "ingest", 1)
        write(Path(path), ingest_source(elsewhere, "v2"))
        await reload_file(engine, path)
        land(inbox, "b.csv")  # the old directory: no longer a run trigger
        land(elsewhere, "c.csv")
        runs = await until_runs(engine, "ingest", 2)
        await settle(engine)
        runs = await runs_of(engine, "ingest")
        results = {run.conf["name"]: await result_of(engine, run.run_id, "consume") for run in runs}
        sources = await engine.store.list_run_sources()
    assert results == {"a.csv": "v1", "c.csv": "v2"}
    assert [s.kwargs["directory"] for s in sources if s.dag_id == "ingest"] == [str(elsewhere)]
    assert first.conf["directory"] == str(inbox)


async def test_a_broken_file_keeps_its_last_good_run_trigger_and_shows_the_error(
    make_settings: SettingsFactory, inbox: Path
) -> None:
    settings = make_settings()
    good = ingest_source(inbox, "v1")
    path = write(settings.dags_folder / "ingest.py", good)
    async with folder_engine(settings) as engine:
        write(Path(path), good + "\ndef broken(:\n")
        await reload_file(engine, path)
        land(inbox, "a.csv")
        [run] = await until_runs(engine, "ingest", 1)
        errors = await engine.store.list_import_errors()
        answer = await result_of(engine, run.run_id, "consume")
        write(Path(path), good)  # fixed: the error goes away
        await reload_file(engine, path)
        fixed = await engine.store.list_import_errors()
    assert answer == "v1"
    assert [(error.fileloc, error.line) for error in errors] == [(path, good.count("\n") + 1)]
    assert "SyntaxError" in errors[0].message
    assert fixed == []


async def test_an_invalid_cron_keeps_the_last_good_schedule_ticking(
    make_settings: SettingsFactory,
) -> None:
    settings = make_settings()
    clock = clock_at("2026-03-10T12:30:00")
    path = write(settings.dags_folder / "hourly.py", HOURLY_FILE.format(schedule="@hourly"))
    async with folder_engine(settings, clock) as engine:
        await until_runs(engine, "hourly", 1)
        write(Path(path), HOURLY_FILE.format(schedule="61 * * * *"))
        await reload_file(engine, path)
        clock.advance(3600)  # 13:30: the 12:00 interval ended
        runs = await until_runs(engine, "hourly", 2)
        errors = await engine.store.list_import_errors()
    assert len(runs) == 2
    [error] = errors
    assert error.fileloc == path
    assert error.line == 3  # the DAG(...) line
    assert "minute field '61': value 61 is out of range 0-59" in error.message


async def test_a_deleted_dag_file_stops_its_run_trigger(
    make_settings: SettingsFactory, inbox: Path
) -> None:
    settings = make_settings()
    path = write(settings.dags_folder / "ingest.py", ingest_source(inbox, "v1"))
    async with folder_engine(settings) as engine:
        land(inbox, "a.csv")
        await until_runs(engine, "ingest", 1)
        Path(path).unlink()
        await reload_file(engine, path)
        land(inbox, "b.csv")
        await settle(engine)
        runs = await runs_of(engine, "ingest")
        hosted = engine.starter.host.hosted()
    assert [run.conf["name"] for run in runs] == ["a.csv"]
    assert "ingest" not in engine.dagbag.dags
    assert all(dag_id != "ingest" for dag_id, _ in hosted)


async def test_events_waiting_for_their_window_start_their_run_when_the_dag_comes_back(
    make_settings: SettingsFactory, inbox: Path
) -> None:
    settings = make_settings()
    clock = NapClock()
    source = ingest_source(inbox, "v1", options=", batch_window=60")
    path = write(settings.dags_folder / "ingest.py", source)
    async with folder_engine(settings, clock) as engine:
        land(inbox, "a.csv")
        await until_pending(engine, "ingest", 1)
        Path(path).unlink()
        await reload_file(engine, path)
        write(Path(path), source)  # deployed again before the window ends
        await reload_file(engine, path)
        clock.advance(60)
        [run] = await until_runs(engine, "ingest", 1)
    assert [event["name"] for event in run.conf["events"]] == ["a.csv"]


async def test_following_the_folder_picks_up_an_edit_on_disk(
    make_settings: SettingsFactory, inbox: Path
) -> None:
    settings = make_settings()
    path = write(settings.dags_folder / "ingest.py", ingest_source(inbox, "v1"))
    async with folder_engine(settings) as engine, anyio.create_task_group() as group:
        await group.start(follow_dag_folder, engine)
        before = engine.dagbag.dags["ingest"]
        write(Path(path), ingest_source(inbox, "v2"))
        write(settings.dags_folder / "extra.py", HOURLY_FILE.format(schedule="@daily"))

        async def reloaded() -> bool:
            dags = engine.dagbag.dags
            return "hourly" in dags and dags["ingest"] is not before

        await until(reloaded)
        land(inbox, "a.csv")
        [run] = await until_runs(engine, "ingest", 1)
        answer = await result_of(engine, run.run_id, "consume")
        group.cancel_scope.cancel()
    assert answer == "v2"


async def test_files_edited_while_the_folder_was_loading_are_reloaded_once_it_is_watched(
    make_settings: SettingsFactory, inbox: Path
) -> None:
    """Between the engine reading the folder and the watch starting, no OS event is seen: a
    file added, changed or deleted in that window is found by comparing its stamp."""
    settings = make_settings()
    changed = write(settings.dags_folder / "ingest.py", ingest_source(inbox, "v1"))
    removed = write(settings.dags_folder / "old.py", HOURLY_FILE.format(schedule="@daily"))
    async with folder_engine(settings) as engine, anyio.create_task_group() as group:
        assert sorted(engine.dagbag.dags) == [BARRIER, "hourly", "ingest"]
        before = engine.dagbag.dags["ingest"]
        write(Path(changed), ingest_source(inbox, "v2") + "\n# a longer file\n")
        Path(removed).unlink()
        late = HOURLY_FILE.format(schedule="@daily").replace('"hourly"', '"late"')
        write(settings.dags_folder / "late.py", late)
        await group.start(follow_dag_folder, engine)

        async def caught_up() -> bool:
            dags = engine.dagbag.dags
            return sorted(dags) == [BARRIER, "ingest", "late"] and dags["ingest"] is not before

        await until(caught_up)
        group.cancel_scope.cancel()


async def test_a_dag_moved_to_another_file_goes_on_whichever_file_reloads_first(
    make_settings: SettingsFactory, inbox: Path
) -> None:
    """A deploy moves DAG ingest from z_old.py to a_new.py: a_new.py sorts (and reloads) first."""
    settings = make_settings()
    old = write(settings.dags_folder / "z_old.py", ingest_source(inbox, "v1"))
    async with folder_engine(settings) as engine:
        new = write(settings.dags_folder / "a_new.py", ingest_source(inbox, "v2"))
        write(Path(old), HOURLY_FILE.format(schedule="@daily"))
        await reload_file(engine, new)  # z_old.py still has ingest: this one is a duplicate
        await reload_file(engine, old)  # ... until z_old.py drops it
        land(inbox, "a.csv")
        [run] = await until_runs(engine, "ingest", 1)
        answer = await result_of(engine, run.run_id, "consume")
        errors = await engine.store.list_import_errors()
    assert engine.dagbag.files["ingest"] == new
    assert answer == "v2"
    assert errors == []


# -- mistakes at definition ---------------------------------------------------------------------

BAD_DAGS = {
    "invalid cron": (
        'DAG("bad", schedule="61 * * * *")',
        "minute field '61': value 61 is out of range 0-59",
    ),
    "unknown timezone": (
        'DAG("bad", schedule="@daily", timezone="Europe/Pariss")',
        "unknown timezone 'Europe/Pariss'; did you mean 'Europe/Paris'?",
    ),
    "start after end": (
        'DAG("bad", schedule="@daily", start_date="2026-02-01", end_date="2026-01-01")',
        "end_date (2026-01-01) is before start_date (2026-02-01)",
    ),
    "not a run trigger": (
        'DAG("bad", run_on=[3])',
        "run_on takes triggers (FileTrigger, S3Trigger, ...), Assets, all_of/any_of "
        "and DagFinished, got 3",
    ),
    "empty batch window": (
        'DAG("bad", run_on=Asset("x"), batch_window=0)',
        "batch_window must be a finite number of seconds above 0, got 0",
    ),
    "catchup as text": (
        'DAG("bad", schedule="@daily", catchup="yes")',
        "catchup must be False (only the latest missed interval runs), True (every missed "
        "interval) or a whole number N >= 1 (the latest N), got 'yes'",
    ),
    "trigger class in a function": (
        'DAG("bad", run_on=local_trigger())',
        "Local is defined inside a function; a run trigger's class must be importable",
    ),
    "same source twice": (
        'DAG("bad", run_on=[Asset("x"), Asset("x")])',
        "run_on names the same source twice: asset x",
    ),
    "unknown DagFinished state": (
        'DAG("bad", run_on=DagFinished("a", states=("done",)))',
        "DagFinished states must be among",
    ),
}

BAD_FILE = """
from dataclasses import dataclass

from orchestrator import DAG, Asset, DagFinished
from triggers.base import Trigger


def local_trigger() -> Trigger:
    @dataclass(frozen=True, kw_only=True)
    class Local(Trigger):
        name: str = "x"

    return Local()


{definition}
"""


@pytest.mark.parametrize("case", list(BAD_DAGS))
def test_a_mistake_in_how_runs_start_is_a_dag_error_at_the_dags_line(
    case: str, tmp_path: Path
) -> None:
    definition, message = BAD_DAGS[case]
    source = BAD_FILE.format(definition=definition)
    path = write(tmp_path / "bad.py", source)
    result = load_dag_file(path)
    assert result.dags == {}
    [error] = result.errors
    assert error.file == path
    assert error.line == textwrap.dedent(source).lstrip("\n").count("\n")  # the last line
    assert message in error.message
