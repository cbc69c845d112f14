"""Triggers waiting in shared hosts: one timer heap, one watch per folder; same contracts.

Each contract of a trigger hosted alone holds for one in a shared host: it fires with its own
event, a disarmed one reports nothing and releases what it held, a failure fails only the
triggers it concerns, and a file that was there before the wait began counts.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable, Hashable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import anyio
import triggerkit
from sensorkit import SettingsFactory, WatchedClock, engine_for, until_state
from triggerkit import GateTrigger, open_gate, until_waiting

from orchestrator import DAG
from orchestrator.clock import FakeClock
from orchestrator.state import RunState, TaskState
from orchestrator.waiting.triggerer import Failed, Fired, Triggerer, TriggerOutcome
from sensors import DateTimeSensor, FileSensor
from triggers.base import SharedHost, Sharing, Trigger, TriggerRuntime
from triggers.file import FileTrigger
from triggers.time import TimeTrigger
from triggers.watch import watch_statistics

START = 1_800_000_000.0  # FakeClock's default start
Reports = dict[Hashable, TriggerOutcome]


def key(name: str) -> tuple[str, str, int]:
    return ("run", name, -1)


@asynccontextmanager
async def hosting(clock: FakeClock | None = None) -> AsyncIterator[tuple[Triggerer, Reports]]:
    reports: Reports = {}
    runtime = TriggerRuntime(clock=clock or FakeClock())
    async with anyio.create_task_group() as tg:
        report = reports.__setitem__
        yield Triggerer(tg, capacity=100_000, report=report, runtime=runtime), reports
        tg.cancel_scope.cancel()


async def until(condition: Callable[[], bool]) -> None:
    with anyio.fail_after(10):
        # Hosts' counters and the watch thread have no event to wait on.
        while not condition():  # noqa: ASYNC110
            await anyio.sleep(0.001)


def land(path: Path) -> None:
    partial = path.with_name(path.name + ".part")
    partial.write_text("x")
    os.replace(partial, path)


def payload(outcome: TriggerOutcome) -> object:
    assert isinstance(outcome, Fired), outcome
    return outcome.event.payload


async def test_time_triggers_wait_in_one_heap_and_fire_in_order() -> None:
    clock = FakeClock()
    async with hosting(clock) as (triggerer, reports):
        for i in range(1000):
            triggerer.arm(key(f"t{i}"), TimeTrigger(moment=START + 10 + i))
        await until(lambda: clock.sleepers == 1)  # one sleeper for a thousand triggers
        assert triggerer.statistics().shared == 1000
        triggerer.disarm(key("t1"))
        clock.advance(11.5)
        await until(lambda: len(reports) == 1)
        assert list(reports) == [key("t0")]
        assert payload(reports[key("t0")])["fired_at"] == START + 11.5  # type: ignore[index]
        clock.advance(1)
        await until(lambda: key("t2") in reports)
        assert key("t1") not in reports  # disarmed: it reports nothing
        for i in range(3, 1000):
            triggerer.disarm(key(f"t{i}"))
        await until(lambda: clock.sleepers == 0)  # the last one gone, the host ends
        assert triggerer.statistics().running == 0


async def test_a_moment_that_passed_fires_at_once_and_one_armed_again_takes_its_new_moment() -> (
    None
):
    clock = FakeClock()
    async with hosting(clock) as (triggerer, reports):
        triggerer.arm(key("late"), TimeTrigger(moment=START + 100))
        triggerer.arm(key("late"), TimeTrigger(moment=START + 200))  # armed again: a new moment
        triggerer.arm(key("past"), TimeTrigger(moment=START - 5))
        await until(lambda: key("past") in reports)
        clock.advance(150)
        await until(lambda: clock.sleepers == 1)
        assert list(reports) == [key("past")]  # the first moment of "late" is forgotten
        clock.advance(50)
        await until(lambda: key("late") in reports)


async def test_file_triggers_on_a_folder_share_one_watch_and_each_fires_for_its_file(
    tmp_path: Path,
) -> None:
    land(tmp_path / "part_3.csv")  # there before the wait began: it counts
    async with hosting() as (triggerer, reports):
        for i in range(50):
            triggerer.arm(
                key(f"f{i}"), FileTrigger(directory=str(tmp_path), pattern=f"part_{i}.csv")
            )
        triggerer.arm(key("any"), FileTrigger(directory=str(tmp_path), pattern="*.csv"))
        await until(lambda: triggerer.statistics().settling == 0)
        assert watch_statistics().subscribers == 1
        assert set(reports) == {key("f3"), key("any")}
        assert payload(reports[key("any")])["name"] == "part_3.csv"  # type: ignore[index]
        land(tmp_path / "part_7.csv")
        land(tmp_path / ".part_8.csv")  # hidden: still being written
        await until(lambda: key("f7") in reports)
        assert set(reports) == {key("f3"), key("any"), key("f7")}
        for i in range(50):
            triggerer.disarm(key(f"f{i}"))
        await until(lambda: watch_statistics().os_watches == 0)  # released with the last one
        assert triggerer.statistics().running == 0


async def test_a_trigger_armed_on_a_watched_folder_sees_a_file_already_there(
    tmp_path: Path,
) -> None:
    async with hosting() as (triggerer, reports):
        triggerer.arm(key("first"), FileTrigger(directory=str(tmp_path), pattern="a.csv"))
        await until(lambda: triggerer.statistics().settling == 0)
        land(tmp_path / "b.csv")
        triggerer.arm(key("second"), FileTrigger(directory=str(tmp_path), pattern="b.csv"))
        await until(lambda: key("second") in reports)
        assert list(reports) == [key("second")]


async def test_a_trigger_armed_as_the_last_one_on_its_folder_ends_sees_the_next_file(
    tmp_path: Path,
) -> None:
    """The folder's watch is being released as the next trigger arrives: it must be watched
    again before that trigger counts as waiting, or a file landing then is missed."""
    async with hosting() as (triggerer, reports):
        for i in range(20):  # each round races one release against one arming
            triggerer.arm(key(f"r{i}"), FileTrigger(directory=str(tmp_path), pattern=f"{i}.csv"))
            await until(lambda: triggerer.statistics().settling == 0)
            land(tmp_path / f"{i}.csv")
            await until(lambda i=i: key(f"r{i}") in reports)  # type: ignore[misc]


async def test_a_missing_folder_fails_only_the_triggers_on_it(tmp_path: Path) -> None:
    clock = FakeClock()
    missing = tmp_path / "missing"
    async with hosting(clock) as (triggerer, reports):
        triggerer.arm(key("a"), FileTrigger(directory=str(missing), pattern="a"))
        triggerer.arm(key("b"), FileTrigger(directory=str(missing), pattern="b"))
        triggerer.arm(key("time"), TimeTrigger(moment=START + 60))
        await until(lambda: len(reports) == 2)
        for name in ("a", "b"):
            outcome = reports[key(name)]
            assert isinstance(outcome, Failed)
            gone = f"TriggerError: the directory {missing} does not exist"
            assert outcome.error == f"trigger FileTrigger failed: {gone}"
        assert triggerer.statistics().running == 1  # the time trigger waits on


class BrokenHost(SharedHost["BrokenTrigger"]):
    async def serve(self) -> None:
        await anyio.lowlevel.checkpoint()
        raise RuntimeError("the host broke")


@dataclass(frozen=True, kw_only=True)
class BrokenTrigger(Trigger):
    def sharing(self) -> Sharing:
        return Sharing(BrokenHost)


async def test_a_host_that_raises_fails_its_own_triggers_and_no_other() -> None:
    triggerkit.reset()
    async with hosting() as (triggerer, reports):
        triggerer.arm(key("gate"), GateTrigger(name="beside-a-broken-host"))
        triggerer.arm(key("broken1"), BrokenTrigger())
        triggerer.arm(key("broken2"), BrokenTrigger())
        await until(lambda: len(reports) == 2)
        errors = {outcome.error for outcome in reports.values() if isinstance(outcome, Failed)}
        assert errors == {"trigger BrokenTrigger failed: RuntimeError: the host broke"}
        await until_waiting("beside-a-broken-host")
        open_gate("beside-a-broken-host", "still here")
        await until(lambda: key("gate") in reports)
        assert payload(reports[key("gate")]) == "still here"


async def test_shared_sensors_time_out_and_release_their_hosts(
    make_settings: SettingsFactory, tmp_path: Path
) -> None:
    clock = WatchedClock()
    with DAG("timing_out") as pipeline:
        DateTimeSensor(task_id="moment", target_time=START + 3600, timeout=60)
        FileSensor(task_id="file", directory=str(tmp_path), pattern="never.csv", timeout=60)
    async with engine_for(make_settings(), pipeline, clock=clock) as engine:
        run_id = await engine.trigger("timing_out")
        await until_state(engine, run_id, "file", TaskState.DEFERRED)
        await until(lambda: engine.triggerer.statistics().shared == 2)
        await until(lambda: engine.triggerer.statistics().settling == 0)
        clock.advance(61)
        record = await engine.wait(run_id)
        assert engine.triggerer.statistics().running == 0
        await until(lambda: watch_statistics().os_watches == 0)
        instances = await engine.store.list_task_instances(run_id)
    assert record.state is RunState.FAILED
    errors = {ti.task_id: ti.error for ti in instances}
    assert errors == dict.fromkeys(["moment", "file"], "TriggerTimeoutError: no event within 60s")
