"""Run triggers end to end: files, S3 objects, assets and finished runs start runs by themselves.

Real parts throughout: watchfiles on tmp_path, moto's S3 server, the SQLite store, the engine
restarted on the same state directory. Time moves only where a window, a poll or a backoff
needs it (`NapClock`); nothing sleeps to wait.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import pytest
from aiobotocore.session import get_session
from s3server import running_s3_server
from startkit import (
    NapClock,
    events_of,
    land,
    runs_of,
    settle,
    source_of,
    starting_engine,
    until_pending,
    until_runs,
    until_source_error,
    until_true,
)

from orchestrator import DAG, Asset, DagFinished, TaskContext, task
from orchestrator.changes import RunChanged
from orchestrator.config import Settings
from orchestrator.state import RunState
from orchestrator.store.records import RunRecord
from triggers.file import FileTrigger
from triggers.s3 import S3Trigger

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from types_aiobotocore_s3 import S3Client

SettingsFactory = Callable[..., Settings]
QUEUED = RunState.QUEUED
BUCKET = "landing"


def inbox_of(tmp_path: Path) -> Path:
    inbox = tmp_path / "incoming"
    inbox.mkdir()
    return inbox


def file_dag(dag_id: str, inbox: Path, **options: Any) -> DAG:
    """A DAG run by each CSV landing in `inbox`; its task returns the file's name."""
    with DAG(dag_id, run_on=FileTrigger(directory=str(inbox), pattern="*.csv"), **options) as dag:

        @task
        def consume(context: TaskContext) -> Any:
            return context.conf.get("name")

        consume()
    return dag


def names(runs: list[RunRecord]) -> list[str]:
    return sorted(run.conf["name"] for run in runs)


# -- one file, one run --------------------------------------------------------------------------


async def test_each_landed_file_starts_one_run_with_the_file_in_its_conf(
    make_settings: SettingsFactory, tmp_path: Path
) -> None:
    inbox = inbox_of(tmp_path)
    async with starting_engine(make_settings(), file_dag("ingest", inbox)) as engine:
        land(inbox, "a.csv", "1,2\n")
        land(inbox, "b.csv", "3\n")
        land(inbox, "notes.txt", "not a csv")
        runs = await until_runs(engine, "ingest", 2)
        events = await events_of(engine, "ingest")
    first = next(run for run in runs if run.conf["name"] == "a.csv")
    assert first.run_type == "event"
    assert first.state is RunState.SUCCESS
    assert first.conf["path"] == str(inbox / "a.csv")
    assert first.conf["size"] == 4
    payload = {key: value for key, value in first.conf.items() if key != "events"}
    assert first.conf["events"] == [payload]  # the lone event, also under "events"
    assert first.dedup_key is not None
    assert first.dedup_key.startswith(f"{inbox / 'a.csv'}:4:")  # path:size:mtime_ns
    assert len(events) == 2  # one event per file, each with its run
    assert {event.run_id for event in events} == {run.run_id for run in runs}


async def test_a_restart_rescans_without_a_second_run_and_new_versions_start_new_runs(
    make_settings: SettingsFactory, tmp_path: Path
) -> None:
    inbox = inbox_of(tmp_path)
    dag = file_dag("ingest", inbox)
    settings = make_settings()
    async with starting_engine(settings, dag) as engine:
        land(inbox, "a.csv", "1,2\n")
        land(inbox, "b.csv", "3\n")
        await until_runs(engine, "ingest", 2)

    # Reopened with a.csv and b.csv still there: the scan yields them again, no run follows.
    async with starting_engine(settings, dag) as engine:
        land(inbox, "a.csv", "1,2,3,4\n")  # rewritten: a new version, so a new run
        runs = await until_runs(engine, "ingest", 3)
        await settle(engine)
        assert len(await runs_of(engine, "ingest")) == 3
    assert names(runs) == ["a.csv", "a.csv", "b.csv"]
    assert sorted(run.conf["size"] for run in runs if run.conf["name"] == "a.csv") == [4, 8]

    land(inbox, "c.csv", "5\n")  # lands while nothing watches
    async with starting_engine(settings, dag) as engine:
        runs = await until_runs(engine, "ingest", 4)
        await settle(engine)
        runs = await runs_of(engine, "ingest")
        events = await events_of(engine, "ingest")
    assert names(runs) == ["a.csv", "a.csv", "b.csv", "c.csv"]
    assert len(events) == 4
    assert len({event.dedup_key for event in events}) == 4


async def test_max_active_runs_holds_back_a_burst_of_fifty_files_and_drops_none(
    make_settings: SettingsFactory, tmp_path: Path
) -> None:
    inbox = inbox_of(tmp_path)
    release = anyio.Event()
    with DAG(
        "burst", run_on=FileTrigger(directory=str(inbox), pattern="*.csv"), max_active_runs=2
    ) as dag:

        @task(in_process=True)
        async def hold() -> str:
            await release.wait()  # every run stays running until all files are in
            return "done"

        hold()

    running: set[str] = set()
    ended: set[str] = set()
    peak = 0
    async with starting_engine(make_settings(), dag) as engine, engine.subscribe() as changes:
        for number in range(50):
            land(inbox, f"{number:02}.csv", f"{number}\n")
        with anyio.fail_after(20):
            async for change in changes:
                if not isinstance(change, RunChanged) or change.dag_id != "burst":
                    continue
                if change.state is RunState.RUNNING:
                    running.add(change.run_id)
                elif change.state.finished:
                    running.discard(change.run_id)
                    ended.add(change.run_id)
                peak = max(peak, len(running))
                if len(running) == 2 and not release.is_set():
                    await until_runs(engine, "burst", 50, finished=False)  # 48 queued
                    release.set()
                if len(ended) == 50:
                    break
        runs = await runs_of(engine, "burst")
        events = await events_of(engine, "burst")
    assert peak == 2
    assert len(runs) == 50
    assert {run.state for run in runs} == {RunState.SUCCESS}
    assert len(events) == 50
    assert {event.run_id for event in events} == {run.run_id for run in runs}


async def test_a_paused_dag_starts_no_run_and_unpausing_finds_the_files_landed_meanwhile(
    make_settings: SettingsFactory, tmp_path: Path
) -> None:
    inbox = inbox_of(tmp_path)
    async with starting_engine(make_settings(), file_dag("ingest", inbox)) as engine:
        land(inbox, "a.csv")
        await until_runs(engine, "ingest", 1)
        await engine.set_paused("ingest", True)
        land(inbox, "b.csv")
        await settle(engine)
        started = [run for run in await runs_of(engine, "ingest") if run.state is not QUEUED]
        await engine.set_paused("ingest", False)  # its trigger scans again: b.csv is found
        runs = await until_runs(engine, "ingest", 2)
        await settle(engine)
        runs = await runs_of(engine, "ingest")
    assert names(started) == ["a.csv"]
    assert names(runs) == ["a.csv", "b.csv"]


# -- windows: batch_window and debounce ---------------------------------------------------------


async def test_a_batch_window_gathers_five_files_into_one_run(
    make_settings: SettingsFactory, tmp_path: Path
) -> None:
    inbox = inbox_of(tmp_path)
    clock = NapClock()
    dag = file_dag("batched", inbox, batch_window=60)
    async with starting_engine(make_settings(), dag, clock=clock) as engine:
        for number in range(5):
            land(inbox, f"{number}.csv", f"{number}\n")
        await until_pending(engine, "batched", 5)
        clock.advance(59)
        await settle(engine)
        assert await runs_of(engine, "batched") == []  # the window is still open
        clock.advance(1)
        [run] = await until_runs(engine, "batched", 1)
        land(inbox, "late.csv", "6\n")  # after the window: the next batch starts its own
        await until_pending(engine, "batched", 1)
        clock.advance(60)
        runs = await until_runs(engine, "batched", 2)
    assert "name" not in run.conf  # a batch has only "events"
    assert sorted(event["name"] for event in run.conf["events"]) == [f"{n}.csv" for n in range(5)]
    assert [event["name"] for event in runs[1].conf["events"]] == ["late.csv"]
    assert run.run_type == "event"


async def test_debounce_waits_for_a_quiet_period_that_each_event_starts_over(
    make_settings: SettingsFactory, tmp_path: Path
) -> None:
    inbox = inbox_of(tmp_path)
    clock = NapClock()
    dag = file_dag("quiet", inbox, debounce=30)
    async with starting_engine(make_settings(), dag, clock=clock) as engine:
        land(inbox, "first.csv")
        await until_pending(engine, "quiet", 1)
        clock.advance(20)
        land(inbox, "second.csv")
        await until_pending(engine, "quiet", 2)
        clock.advance(15)  # 35 s after the first event, 15 s after the second
        await settle(engine)
        assert await runs_of(engine, "quiet") == []
        clock.advance(15)  # 30 s of quiet
        [run] = await until_runs(engine, "quiet", 1)
    assert [event["name"] for event in run.conf["events"]] == ["first.csv", "second.csv"]


async def test_a_batch_window_caps_a_debounce_that_keeps_being_restarted(
    make_settings: SettingsFactory, tmp_path: Path
) -> None:
    inbox = inbox_of(tmp_path)
    clock = NapClock()
    dag = file_dag("capped", inbox, batch_window=60, debounce=20)
    async with starting_engine(make_settings(), dag, clock=clock) as engine:
        for number in range(4):  # an event every 15 s: never 20 s of quiet
            if number:
                clock.advance(15)
            land(inbox, f"{number}.csv")
            await until_pending(engine, "capped", number + 1)
        clock.advance(14)  # 59 s after the first event: the debounce says 65, the window 60
        await settle(engine)
        assert await runs_of(engine, "capped") == []
        clock.advance(1)
        [run] = await until_runs(engine, "capped", 1)
        land(inbox, "alone.csv")  # then quiet: the debounce, 20 s, comes before the window
        await until_pending(engine, "capped", 1)
        clock.advance(20)
        runs = await until_runs(engine, "capped", 2)
    assert len(run.conf["events"]) == 4
    assert [event["name"] for event in runs[1].conf["events"]] == ["alone.csv"]


async def test_events_waiting_for_their_window_survive_a_restart(
    make_settings: SettingsFactory, tmp_path: Path
) -> None:
    inbox = inbox_of(tmp_path)
    clock = NapClock()
    dag = file_dag("batched", inbox, batch_window=60)
    settings = make_settings()
    async with starting_engine(settings, dag, clock=clock) as engine:
        land(inbox, "a.csv")
        land(inbox, "b.csv")
        await until_pending(engine, "batched", 2)
    clock.advance(30)
    async with starting_engine(settings, dag, clock=clock) as engine:
        land(inbox, "c.csv")  # the rescan finds a and b again: recorded already, not re-added
        await until_pending(engine, "batched", 3)
        await settle(engine)
        assert await runs_of(engine, "batched") == []
        clock.advance(30)  # the window opened by a.csv, before the restart, ends
        [run] = await until_runs(engine, "batched", 1)
        events = await events_of(engine, "batched")
    assert sorted(event["name"] for event in run.conf["events"]) == ["a.csv", "b.csv", "c.csv"]
    assert len(events) == 3
    assert {event.run_id for event in events} == {run.run_id}


async def test_a_window_that_ended_while_down_starts_its_run_on_reopening(
    make_settings: SettingsFactory, tmp_path: Path
) -> None:
    inbox = inbox_of(tmp_path)
    clock = NapClock()
    dag = file_dag("batched", inbox, batch_window=60)
    settings = make_settings()
    async with starting_engine(settings, dag, clock=clock) as engine:
        land(inbox, "a.csv")
        await until_pending(engine, "batched", 1)
    clock.advance(3600)
    async with starting_engine(settings, dag, clock=clock) as engine:
        [run] = await until_runs(engine, "batched", 1)
    assert [event["name"] for event in run.conf["events"]] == ["a.csv"]


# -- assets and finished runs -------------------------------------------------------------------

FEATURES = Asset("lake/features")


def producer_dag() -> DAG:
    """A DAG whose task updates FEATURES, and fails when its conf says so."""
    with DAG("producer") as dag:

        @task(outlets=[FEATURES])
        def build(context: TaskContext) -> str:
            if context.conf.get("fail"):
                raise RuntimeError("no features today")
            return "built"

        build()
    return dag


def consumer_dag(dag_id: str, run_on: Any) -> DAG:
    with DAG(dag_id, run_on=run_on) as dag:

        @task
        def use(context: TaskContext) -> Any:
            return context.conf

        use()
    return dag


async def test_a_task_updating_an_asset_starts_a_run_of_each_dag_run_on_it(
    make_settings: SettingsFactory,
) -> None:
    dags = [producer_dag(), consumer_dag("train", FEATURES), consumer_dag("report", FEATURES)]
    async with starting_engine(make_settings(), *dags) as engine:
        first = await engine.trigger("producer")
        await engine.wait(first)
        failed = await engine.wait(await engine.trigger("producer", {"fail": True}))
        second = await engine.trigger("producer")
        await engine.wait(second)
        train = await until_runs(engine, "train", 2)
        report = await until_runs(engine, "report", 2)
        await settle(engine)
        assert len(await runs_of(engine, "train")) == 2  # none for the failed run
    assert failed.state is RunState.FAILED
    assert [run.conf["run_id"] for run in train] == [first, second]
    assert [run.conf["run_id"] for run in report] == [first, second]
    assert train[0].conf["asset"] == "lake/features"
    assert train[0].conf["task_id"] == "build"
    assert train[0].conf["events"][0]["run_id"] == first
    assert {run.state for run in train} == {RunState.SUCCESS}


async def test_dag_finished_runs_after_a_success_and_on_failure_only_if_asked(
    make_settings: SettingsFactory,
) -> None:
    dags = [
        producer_dag(),
        consumer_dag("after_success", DagFinished("producer")),
        consumer_dag("after_failure", DagFinished("producer", states=("failed",))),
    ]
    async with starting_engine(make_settings(), *dags) as engine:
        good = await engine.trigger("producer")
        await engine.wait(good)
        bad = await engine.trigger("producer", {"fail": True})
        await engine.wait(bad)
        [on_success] = await until_runs(engine, "after_success", 1)
        [on_failure] = await until_runs(engine, "after_failure", 1)
        await settle(engine)
        assert len(await runs_of(engine, "after_success")) == 1
        assert len(await runs_of(engine, "after_failure")) == 1
    assert on_success.conf["run_id"] == good
    assert on_success.conf["state"] == "success"
    assert on_success.conf["dag_id"] == "producer"
    assert on_failure.conf["run_id"] == bad
    assert on_failure.conf["state"] == "failed"


# -- S3 ----------------------------------------------------------------------------------------


@pytest.fixture
def endpoint(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    with running_s3_server(monkeypatch) as endpoint_url:
        yield endpoint_url


@asynccontextmanager
async def s3_client(endpoint: str) -> AsyncIterator[S3Client]:
    async with get_session().create_client("s3", endpoint_url=endpoint) as client:
        yield client


def s3_dag(endpoint: str) -> DAG:
    trigger = S3Trigger(
        bucket=BUCKET,
        prefix="raw/",
        endpoint_url=endpoint,
        poll_interval=5,
        jitter=0.0,
        full_scan_every=2,  # odd polls list after the cursor, even ones list everything
    )
    with DAG("lake", run_on=trigger) as dag:

        @task
        def load(context: TaskContext) -> Any:
            return context.conf["key"]

        load()
    return dag


async def test_each_new_s3_object_version_starts_one_run_and_a_restart_resumes_from_the_cursor(
    make_settings: SettingsFactory, endpoint: str
) -> None:
    clock = NapClock()
    dag = s3_dag(endpoint)
    settings = make_settings()
    async with s3_client(endpoint) as s3:
        await s3.create_bucket(Bucket=BUCKET)
        await s3.put_object(Bucket=BUCKET, Key="raw/1.json", Body=b"one")
        async with starting_engine(settings, dag, clock=clock) as engine:
            await until_runs(engine, "lake", 1)
            await s3.put_object(Bucket=BUCKET, Key="raw/2.json", Body=b"two")
            await s3.put_object(Bucket=BUCKET, Key="raw/3.json", Body=b"three")
            await s3.put_object(Bucket=BUCKET, Key="other/4.json", Body=b"not under raw/")
            await poll_again(clock)
            await until_runs(engine, "lake", 3)
            await s3.put_object(Bucket=BUCKET, Key="raw/1.json", Body=b"one, again")
            await poll_again(clock)  # lists after the cursor: the overwrite is not there
            await poll_again(clock)  # the full scan sees the new ETag
            await until_runs(engine, "lake", 4)
            events = await events_of(engine, "lake")
            source = await source_of(engine, "lake")
        assert source.cursor["start_after"] == "raw/3.json"
        keys = [event.payload["key"] for event in events]
        assert keys == ["raw/1.json", "raw/2.json", "raw/3.json", "raw/1.json"]
        assert events[0].payload["etag"] != events[3].payload["etag"]
        assert events[3].dedup_key == f"s3://{BUCKET}/raw/1.json@{events[3].payload['etag']}"

        await s3.put_object(Bucket=BUCKET, Key="raw/5.json", Body=b"five")  # while down
        async with starting_engine(settings, dag, clock=clock) as engine:
            await until_runs(engine, "lake", 5)
            await poll_again(clock)  # a full scan: every key again, none new
            await settle(engine)
            runs = await runs_of(engine, "lake")
            events = await events_of(engine, "lake")
    assert [event.payload["key"] for event in events][4:] == ["raw/5.json"]
    assert len(runs) == 5
    assert {event.run_id for event in events} == {run.run_id for run in runs}


async def poll_again(clock: NapClock) -> None:
    """Wake the S3 trigger from its poll interval and wait until it has polled and slept."""
    await until_true(lambda: clock.sleepers == 1)  # the trigger is the clock's only sleeper
    naps = clock.naps
    clock.advance(5)
    await clock.next_nap(after=naps)


# -- a run trigger that fails -------------------------------------------------------------------


async def test_a_missing_directory_is_reported_and_retried_until_it_exists(
    make_settings: SettingsFactory, tmp_path: Path
) -> None:
    inbox = tmp_path / "not-yet"
    clock = NapClock()
    async with starting_engine(make_settings(), file_dag("ingest", inbox), clock=clock) as engine:
        error = await until_source_error(engine, "ingest")
        await settle(engine)  # the engine goes on: the barrier DAG runs
        inbox.mkdir()
        land(inbox, "a.csv")
        clock.advance(1)  # the first backoff
        await until_source_error(engine, "ingest", failing=False)
        [run] = await until_runs(engine, "ingest", 1)
    assert error is not None
    assert f"the directory {inbox} does not exist" in error
    assert "trying again in 1 s" in error
    assert run.conf["name"] == "a.csv"


async def test_a_directory_deleted_while_watched_is_reported_and_followed_again_once_back(
    make_settings: SettingsFactory, tmp_path: Path
) -> None:
    inbox = inbox_of(tmp_path)
    clock = NapClock()
    async with starting_engine(make_settings(), file_dag("ingest", inbox), clock=clock) as engine:
        land(inbox, "a.csv")
        await until_runs(engine, "ingest", 1)
        (inbox / "a.csv").unlink()
        inbox.rmdir()
        error = await until_source_error(engine, "ingest")
        inbox.mkdir()
        land(inbox, "b.csv")
        clock.advance(1)
        await until_source_error(engine, "ingest", failing=False)
        runs = await until_runs(engine, "ingest", 2)
        (inbox / "b.csv").unlink()
        inbox.rmdir()  # gone again, after the trigger worked: the backoff starts over
        again = await until_source_error(engine, "ingest")
    assert error is not None
    assert str(inbox) in error
    assert "trying again in 1 s" in error
    assert names(runs) == ["a.csv", "b.csv"]
    assert again is not None
    assert "trying again in 1 s" in again


async def test_a_cleared_producer_that_succeeds_again_starts_its_consumers_again(
    make_settings: SettingsFactory,
) -> None:
    """A re-run is new data: its asset update and its run's end are new events, not replays."""
    dags = [
        producer_dag(),
        consumer_dag("train", FEATURES),
        consumer_dag("audit", DagFinished("producer")),
    ]
    async with starting_engine(make_settings(), *dags) as engine:
        first = await engine.trigger("producer")
        await engine.wait(first)
        await until_runs(engine, "train", 1)
        await until_runs(engine, "audit", 1)
        await engine.clear(first, ["build"])
        train = await until_runs(engine, "train", 2)
        audit = await until_runs(engine, "audit", 2)
        await settle(engine)
        again = await engine.store.get_run(first)
    assert again is not None and again.state is RunState.SUCCESS
    assert [run.conf["run_id"] for run in train] == [first, first]
    assert [run.conf["run_id"] for run in audit] == [first, first]
    assert {run.state for run in train + audit} == {RunState.SUCCESS}
