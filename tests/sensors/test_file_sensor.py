"""FileSensor through the real engine: real watchfiles on tmp_path, the input policy, restarts."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import anyio
import pytest
from sensorkit import (
    DEADLINE,
    SettingsFactory,
    engine_for,
    instance,
    results_of,
    trigger_of,
    until_state,
)

from orchestrator import DAG, dag, task
from orchestrator.clock import FakeClock
from orchestrator.errors import DagError
from orchestrator.state import RunState, TaskState
from sensors import FileSensor
from triggers.watch import watch_statistics


def land(path: Path, text: str) -> None:
    """Write a file the recommended way: under a temporary name, then renamed into place."""
    partial = path.with_name(path.name + ".part")
    partial.write_text(text)
    os.replace(partial, path)


async def until_watching() -> None:
    """Wait until a trigger subscribed to a directory watch (a counter of the watch thread)."""
    with anyio.fail_after(DEADLINE):
        while watch_statistics().subscribers < 1:  # noqa: ASYNC110 - no event to wait on
            await anyio.sleep(0.001)


def landing_dag(directory: Path) -> DAG:
    """A sensor waiting for a CSV in `directory`, and a task that reads the event it gives."""
    with DAG("landing") as pipeline:
        landed = FileSensor(task_id="landed", directory=str(directory), pattern="*.csv")

        @task
        def train(event: dict[str, Any]) -> str:
            return f"trained on {event['name']} ({event['size']} bytes)"

        train(landed.output)
    return pipeline


def untrusted_dag() -> DAG:
    """The directory comes from a DAG param, so a run's conf can set it: it is untrusted."""

    @dag(dag_id="untrusted")  # type: ignore[untyped-decorator]
    def pipeline(directory: str = "/nonexistent") -> None:
        FileSensor(task_id="landed", directory=directory, pattern="*.csv")

    built: DAG = pipeline()
    return built


async def test_a_file_already_there_completes_the_sensor_and_feeds_downstream(
    tmp_path: Path, make_settings: SettingsFactory
) -> None:
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    land(incoming / "day1.csv", "a,b\n1,2\n")

    async with engine_for(make_settings(), landing_dag(incoming)) as engine:
        run_id = await engine.trigger("landing")
        record = await engine.wait(run_id)
        results = await results_of(engine, run_id)

    assert record.state is RunState.SUCCESS
    event = results["landed"]
    assert event["path"] == str(incoming / "day1.csv")
    assert (event["name"], event["size"]) == ("day1.csv", 8)
    assert results["train"] == "trained on day1.csv (8 bytes)"


async def test_a_file_landing_later_runs_downstream_and_waiting_holds_no_slot(
    tmp_path: Path, make_settings: SettingsFactory
) -> None:
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    (incoming / "notes.txt").write_text("not a csv")

    async with engine_for(make_settings(slots=1), landing_dag(incoming)) as engine:
        run_id = await engine.trigger("landing")
        await until_state(engine, run_id, "landed", TaskState.DEFERRED)
        assert engine.scheduler.slots_used == 0  # waiting costs no slot
        row = await trigger_of(engine, run_id, "landed")
        assert row is not None and row.classpath == "triggers.file.FileTrigger"
        await until_watching()  # so the file lands after the trigger started watching
        land(incoming / "late.csv", "x,y\n")
        record = await engine.wait(run_id)
        results = await results_of(engine, run_id)
        assert await engine.store.list_triggers() == []

    assert record.state is RunState.SUCCESS
    assert results["train"] == "trained on late.csv (4 bytes)"
    assert watch_statistics().subscribers == 0  # the trigger's watch was released


async def test_an_untrusted_directory_is_refused_without_allowed_roots(
    tmp_path: Path, make_settings: SettingsFactory
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    land(outside / "secret.csv", "x")

    async with engine_for(make_settings(), untrusted_dag()) as engine:
        run_id = await engine.trigger("untrusted", conf={"directory": str(outside)})
        record = await engine.wait(run_id)
        ti = await instance(engine, run_id, "landed")

    assert record.state is RunState.FAILED
    assert ti is not None and ti.state is TaskState.FAILED
    assert "PolicyError: untrusted path" in (ti.error or "")
    assert "no allowed_roots are configured" in (ti.error or "")


async def test_an_untrusted_directory_outside_the_allowed_roots_is_refused(
    tmp_path: Path, make_settings: SettingsFactory
) -> None:
    allowed, outside = tmp_path / "allowed", tmp_path / "outside"
    allowed.mkdir()
    outside.mkdir()
    land(outside / "secret.csv", "x")
    settings = make_settings(allowed_roots=(allowed,))

    async with engine_for(settings, untrusted_dag()) as engine:
        run_id = await engine.trigger("untrusted", conf={"directory": str(outside)})
        assert (await engine.wait(run_id)).state is RunState.FAILED
        ti = await instance(engine, run_id, "landed")

    assert ti is not None
    assert "PolicyError: untrusted path" in (ti.error or "")
    assert "outside the allowed roots" in (ti.error or "")


async def test_an_untrusted_directory_inside_the_allowed_roots_works(
    tmp_path: Path, make_settings: SettingsFactory
) -> None:
    allowed = tmp_path / "allowed"
    (allowed / "day2").mkdir(parents=True)
    land(allowed / "day2" / "rows.csv", "1\n")
    settings = make_settings(allowed_roots=(allowed,))

    async with engine_for(settings, untrusted_dag()) as engine:
        run_id = await engine.trigger("untrusted", conf={"directory": str(allowed / "day2")})
        record = await engine.wait(run_id)
        results = await results_of(engine, run_id)

    assert record.state is RunState.SUCCESS
    assert results["landed"]["path"] == str(allowed / "day2" / "rows.csv")


@pytest.mark.parametrize("escape", ["dotdot", "symlink"])
async def test_an_escape_from_the_allowed_roots_is_refused(
    tmp_path: Path, make_settings: SettingsFactory, escape: str
) -> None:
    allowed, outside = tmp_path / "allowed", tmp_path / "outside"
    allowed.mkdir()
    outside.mkdir()
    land(outside / "secret.csv", "x")
    if escape == "dotdot":
        directory = f"{allowed}/../outside"
    else:
        (allowed / "link").symlink_to(outside, target_is_directory=True)
        directory = str(allowed / "link")
    settings = make_settings(allowed_roots=(allowed,))

    async with engine_for(settings, untrusted_dag()) as engine:
        run_id = await engine.trigger("untrusted", conf={"directory": directory})
        assert (await engine.wait(run_id)).state is RunState.FAILED
        ti = await instance(engine, run_id, "landed")

    assert ti is not None
    assert f"resolves to {outside}, which is outside the allowed roots" in (ti.error or "")


@pytest.mark.parametrize("arrival", ["already there", "landing later"])
async def test_a_symlink_out_of_the_allowed_roots_is_not_reported_but_one_inside_is(
    tmp_path: Path, make_settings: SettingsFactory, arrival: str
) -> None:
    allowed, outside = tmp_path / "allowed", tmp_path / "outside"
    (allowed / "day3").mkdir(parents=True)
    outside.mkdir()
    land(outside / "secret.csv", "root:x:0:0\n")
    land(allowed / "kept.csv", "1,2\n")
    # The secret is the oldest file, so it would be reported first if it counted at all.
    os.utime(outside / "secret.csv", (1_000, 1_000))
    os.utime(allowed / "kept.csv", (2_000, 2_000))
    settings = make_settings(allowed_roots=(allowed,))

    def link_both() -> None:
        (allowed / "day3" / "escape.csv").symlink_to(outside / "secret.csv")
        (allowed / "day3" / "inside.csv").symlink_to(allowed / "kept.csv")

    if arrival == "already there":
        link_both()
    async with engine_for(settings, untrusted_dag()) as engine:
        run_id = await engine.trigger("untrusted", conf={"directory": str(allowed / "day3")})
        if arrival == "landing later":
            await until_state(engine, run_id, "landed", TaskState.DEFERRED)
            await until_watching()
            link_both()
        record = await engine.wait(run_id)
        results = await results_of(engine, run_id)

    assert record.state is RunState.SUCCESS
    event = results["landed"]
    assert event["path"] == str(allowed / "day3" / "inside.csv")
    assert (event["size"], event["mtime"]) == (4, 2_000)  # the target's, as for trusted paths


async def test_a_symlink_out_of_a_trusted_directory_is_still_reported(
    tmp_path: Path, make_settings: SettingsFactory
) -> None:
    incoming, outside = tmp_path / "incoming", tmp_path / "outside"
    incoming.mkdir()
    outside.mkdir()
    land(outside / "shared.csv", "a\n")
    (incoming / "shared.csv").symlink_to(outside / "shared.csv")

    async with engine_for(make_settings(), landing_dag(incoming)) as engine:
        run_id = await engine.trigger("landing")
        record = await engine.wait(run_id)
        results = await results_of(engine, run_id)

    assert record.state is RunState.SUCCESS  # DAG code is trusted: its links are its own
    assert results["train"] == "trained on shared.csv (2 bytes)"


async def test_a_deferred_file_sensor_fires_after_a_restart_for_a_file_that_landed_while_down(
    tmp_path: Path, make_settings: SettingsFactory
) -> None:
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    pipeline = landing_dag(incoming)
    settings = make_settings()

    async with engine_for(settings, pipeline) as engine:
        run_id = await engine.trigger("landing")
        await until_state(engine, run_id, "landed", TaskState.DEFERRED)
    assert watch_statistics().subscribers == 0  # stopping closed the trigger

    land(incoming / "while-down.csv", "abc\n")  # nobody is watching now

    async with engine_for(settings, pipeline) as engine:
        record = await engine.wait(run_id)
        results = await results_of(engine, run_id)
        tries = await engine.store.list_tries(run_id, "landed")

    assert record.state is RunState.SUCCESS
    assert results["train"] == "trained on while-down.csv (4 bytes)"
    assert [t.try_number for t in tries] == [1]  # re-armed, not retried


async def test_a_rescheduling_file_sensor_checks_the_folder_on_the_clock(
    tmp_path: Path, make_settings: SettingsFactory
) -> None:
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    clock = FakeClock()
    with DAG("checked") as pipeline:
        FileSensor(task_id="landed", directory=str(incoming), mode="reschedule", poke_interval=60)

    async with engine_for(make_settings(), pipeline, clock=clock) as engine:
        run_id = await engine.trigger("checked")
        await until_state(engine, run_id, "landed", TaskState.DEFERRED)
        row = await trigger_of(engine, run_id, "landed")
        assert row is not None and row.classpath == "triggers.time.TimeTrigger"
        assert row.kwargs == {"moment": clock.now() + 60}  # the next check, not a watch
        assert watch_statistics().subscribers == 0
        land(incoming / "checked.csv", "1")
        clock.advance(60)
        record = await engine.wait(run_id)
        results = await results_of(engine, run_id)

    assert record.state is RunState.SUCCESS
    assert results["landed"]["name"] == "checked.csv"


async def test_a_pattern_that_can_never_match_warns_at_definition(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="orchestrator.sensors"), DAG("never"):
        FileSensor(task_id="never", directory=str(tmp_path), pattern="incoming/*.csv")

    [record] = [r for r in caplog.records if r.name == "orchestrator.sensors"]
    message = record.getMessage()
    assert message.startswith(f"{__file__}:")
    assert "FileSensor 'never'" in message
    assert "without recursive=True only file names are matched" in message


async def test_a_pattern_that_can_match_does_not_warn(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="orchestrator.sensors"), DAG("fine"):
        FileSensor(task_id="fine", directory=str(tmp_path), pattern="*.csv")
    assert [r for r in caplog.records if r.name == "orchestrator.sensors"] == []


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"directory": ""}, "FileTrigger.directory must be a non-empty string, got ''"),
        ({"directory": "data", "pattern": ""}, "FileTrigger.pattern must be a non-empty string"),
        ({"directory": "da\0ta"}, "FileTrigger.directory must not contain a NUL character"),
        ({"directory": "data", "stable_for": -1}, "a duration cannot be negative, got -1"),
    ],
)
def test_bad_arguments_are_a_dag_error_at_the_sensor_line(
    arguments: dict[str, Any], message: str
) -> None:
    with DAG("bad"), pytest.raises(DagError) as raised:
        FileSensor(task_id="bad", **arguments)

    error = raised.value
    assert message in str(error)
    assert str(error).startswith(f"{__file__}:{error.line}: sensor 'bad': ")
    assert error.file == __file__ and error.line is not None
    source = Path(__file__).read_text().splitlines()[error.line - 1]
    assert "FileSensor(task_id=" in source  # the line that made the sensor
