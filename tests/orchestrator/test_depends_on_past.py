"""Tasks that depend on their past (`depends_on_past`), on a real engine and store.

A run's task waits, in `none` and noted, until the same task of the DAG's previous run
succeeded or was skipped. The tests wait on the change feed for that note, never on time.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest
from anyio.streams.memory import MemoryObjectReceiveStream

from helpers import bag_of
from orchestrator import DAG, Skip, task
from orchestrator.changes import Change, TaskChanged
from orchestrator.config import Settings
from orchestrator.scheduling.engine import Engine
from orchestrator.scheduling.past_runs import PastWait
from orchestrator.state import RunState, TaskState
from orchestrator.store import Store

SettingsFactory = Callable[..., Settings]
DEADLINE = 15


def daily_load(outcome: dict[str, Any]) -> tuple[DAG, list[str]]:
    """extract >> load, where load depends on its past and does what outcome["load"] says;
    and the runs `load` ran in, in order."""
    calls: list[str] = []

    @task
    def extract() -> int:
        return 1

    @task(depends_on_past=True)
    def load(value: int, run_id: str | None = None) -> int:
        calls.append(str(run_id))
        if outcome["load"] == "fail":
            raise ValueError("the warehouse is down")
        if outcome["load"] == "skip":
            raise Skip("nothing new")
        return value

    with DAG("daily") as dag:
        load(extract())
    return dag, calls


@asynccontextmanager
async def daily_engine(
    settings: Settings, outcome: dict[str, Any]
) -> AsyncIterator[tuple[Engine, list[str]]]:
    """An engine driving `daily_load`, and the runs its `load` ran in."""
    dag, calls = daily_load(outcome)
    async with Engine.open(settings, dagbag=bag_of(dag)) as engine:
        yield engine, calls


async def states(store: Store, run_id: str) -> dict[str, str]:
    return {ti.task_id: ti.state for ti in await store.list_task_instances(run_id)}


async def noted_waiting(changes: MemoryObjectReceiveStream[Change], run_id: str) -> str:
    """The note of the first change saying the run's `load` waits on the previous run."""
    with anyio.fail_after(DEADLINE):
        async for change in changes:
            if (
                isinstance(change, TaskChanged)
                and change.run_id == run_id
                and change.state is TaskState.NONE
                and (change.error or "").startswith("waiting for the previous run")
            ):
                return change.error or ""
    raise AssertionError("the change feed ended")


async def finished(engine: Engine, run_id: str) -> RunState:
    with anyio.fail_after(DEADLINE):
        return (await engine.wait(run_id)).state


async def run_once(engine: Engine, dag_id: str) -> tuple[str, RunState]:
    """Trigger a run and wait until it finished: its id and state."""
    run_id = await engine.trigger(dag_id)
    return run_id, await finished(engine, run_id)


async def failed_then_waiting(engine: Engine) -> tuple[str, str, str]:
    """A run of `daily` whose `load` fails, then one whose `load` waits on it: the two run ids
    and the waiting note. `load` must fail when called."""
    first, first_state = await run_once(engine, "daily")
    assert first_state is RunState.FAILED
    async with engine.subscribe() as changes:
        second = await engine.trigger("daily")
        return first, second, await noted_waiting(changes, second)


@pytest.mark.parametrize(("previous", "ended"), [("ok", "success"), ("skip", "skipped")])
async def test_the_first_run_runs_and_so_does_the_next_after_a_success_or_a_skip(
    make_settings: SettingsFactory, previous: str, ended: str
) -> None:
    outcome = {"load": previous}
    async with daily_engine(make_settings(), outcome) as (engine, calls):
        first, first_state = await run_once(engine, "daily")
        outcome["load"] = "ok"
        second, second_state = await run_once(engine, "daily")
        rows = await states(engine.store, first)
    assert first_state is RunState.SUCCESS and rows["load"] == ended
    assert second_state is RunState.SUCCESS
    assert calls == [first, second]


async def test_after_a_failure_the_next_run_waits_until_the_old_task_is_cleared_and_succeeds(
    make_settings: SettingsFactory,
) -> None:
    outcome = {"load": "fail"}
    async with daily_engine(make_settings(), outcome) as (engine, calls):
        first, second, note = await failed_then_waiting(engine)
        waiting = await states(engine.store, second)
        record = await engine.store.get_run(second)
        outcome["load"] = "ok"
        await engine.clear(first, ["load"])
        first_state = await finished(engine, first)
        second_state = await finished(engine, second)
        rows = await engine.store.list_task_instances(second)
    assert note == f"waiting for the previous run's load ({first})"
    assert waiting == {"extract": "success", "load": "none"}  # waiting, not failed
    assert record is not None and record.state is RunState.RUNNING
    assert (first_state, second_state) == (RunState.SUCCESS, RunState.SUCCESS)
    assert calls == [first, first, second]  # the second ran only after the first's fix
    assert [row.error for row in rows] == [None, None]  # the note went once it could run


async def test_of_two_runs_at_once_the_second_waits_for_the_first(
    make_settings: SettingsFactory,
) -> None:
    order: list[str] = []
    gate = anyio.Event()

    @task(depends_on_past=True)
    async def publish(run_id: str | None = None) -> None:
        order.append(f"start {run_id}")
        if len(order) == 1:
            await gate.wait()
        order.append(f"end {run_id}")

    with DAG("twice", max_active_runs=2) as dag:
        publish()
    async with Engine.open(make_settings(), dagbag=bag_of(dag)) as engine:
        async with engine.subscribe() as changes:
            first = await engine.trigger("twice")
            second = await engine.trigger("twice")
            note = await noted_waiting(changes, second)
        both_running = engine.scheduler.running_runs("twice")
        stuck = engine.scheduler.past.stuck(engine.scheduler.runs[second])
        gate.set()
        states_ = (await finished(engine, first), await finished(engine, second))
    assert note == f"waiting for the previous run's publish ({first})"
    assert both_running == 2
    assert stuck == []  # the first run is driven here: it will settle
    assert states_ == (RunState.SUCCESS, RunState.SUCCESS)
    assert order == [f"start {first}", f"end {first}", f"start {second}", f"end {second}"]


async def test_a_wait_on_an_ended_run_is_stuck_and_a_run_ignoring_its_past_runs_anyway(
    make_settings: SettingsFactory,
) -> None:
    outcome = {"load": "fail"}
    async with daily_engine(make_settings(), outcome) as (engine, calls):
        first, second, _ = await failed_then_waiting(engine)
        stuck = engine.scheduler.past.stuck(engine.scheduler.runs[second])
        outcome["load"] = "ok"
        third = await engine.trigger("daily", ignore_depends_on_past=True)
        third_state = await finished(engine, third)
        still = await states(engine.store, second)
    assert stuck == [PastWait("load", first, "load", (TaskState.FAILED,))]
    assert third_state is RunState.SUCCESS  # though its previous run (second) has not run load
    assert calls == [first, third]
    assert still == {"extract": "success", "load": "none"}  # the ignoring is the third's alone


async def test_wait_for_downstream_waits_for_the_previous_runs_downstream_tasks_too(
    make_settings: SettingsFactory,
) -> None:
    outcome = {"report": "fail"}

    @task(wait_for_downstream=True)
    def load() -> int:
        return 1

    @task
    def report(value: int) -> int:
        if outcome["report"] == "fail":
            raise ValueError("no mail server")
        return value

    with DAG("reported") as dag:
        report(load())
    async with Engine.open(make_settings(), dagbag=bag_of(dag)) as engine:
        first, _ = await run_once(engine, "reported")
        async with engine.subscribe() as changes:
            second = await engine.trigger("reported")
            note = await noted_waiting(changes, second)
        outcome["report"] = "ok"
        await engine.clear(first, ["report"])
        second_state = await finished(engine, second)
    assert note == f"waiting for the previous run's report ({first})"
    assert second_state is RunState.SUCCESS


async def test_a_waiting_task_still_waits_after_a_restart_and_runs_once_the_past_is_fixed(
    make_settings: SettingsFactory,
) -> None:
    outcome = {"load": "fail"}
    settings = make_settings()
    dag, calls = daily_load(outcome)
    async with Engine.open(settings, dagbag=bag_of(dag)) as engine:
        first, second, note = await failed_then_waiting(engine)
    async with Engine.open(settings, dagbag=bag_of(dag)) as engine:
        await engine.clear(first, ["load"])  # fails again: the second still waits
        await finished(engine, first)
        still = await engine.store.list_task_instances(second)
        outcome["load"] = "ok"
        await engine.clear(first, ["load"])
        second_state = await finished(engine, second)
    assert [(row.state, row.error) for row in still][1] == ("none", note)
    assert second_state is RunState.SUCCESS
    assert calls == [first, first, first, second]


async def test_a_dag_without_tasks_depending_on_their_past_never_reads_a_previous_run(
    make_settings: SettingsFactory,
) -> None:
    @task
    def publish() -> int:
        return 1

    async def refused(dag_id: str, run_id: str) -> None:
        raise AssertionError(f"the previous run of {run_id} was read")

    with DAG("independent") as dag:
        publish()
    async with Engine.open(make_settings(), dagbag=bag_of(dag)) as engine:
        engine.store.previous_run = refused  # type: ignore[method-assign]
        states_ = [(await run_once(engine, "independent"))[1] for _ in range(2)]
    assert states_ == [RunState.SUCCESS, RunState.SUCCESS]


async def test_a_cancelled_waiting_run_leaves_nothing_waiting_behind(
    make_settings: SettingsFactory,
) -> None:
    """A daemon lives for months: a run cancelled while it waited on its past must not stay
    in the record of who waits on the old run's task."""
    outcome = {"load": "fail"}
    async with daily_engine(make_settings(), outcome) as (engine, _):
        _first, second, _ = await failed_then_waiting(engine)
        past = engine.scheduler.past
        waiting_before = past.waiting_count()
        await engine.cancel(second)
        second_state = await finished(engine, second)
        waiting_after = past.waiting_count()
    assert waiting_before == 1
    assert second_state is RunState.CANCELLED
    assert waiting_after == 0
