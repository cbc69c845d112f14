"""Restarts: what was waiting waits again, what was interrupted runs again, nothing is lost.

The engine is stopped (its task group cancelled, as on SIGTERM) while sensors are deferred and
tasks are mid-flight; a new engine on the same state directory picks everything up.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anyio
import anyio.lowlevel
import triggerkit
from triggerkit import GateSensor, GateTrigger, open_gate, until_waiting

from helpers import bag_of
from orchestrator import DAG, task
from orchestrator.authoring.defer import Defer
from orchestrator.clock import FakeClock
from orchestrator.config import Settings
from orchestrator.scheduling.engine import Engine
from orchestrator.state import RunState, TaskState
from triggers.time import TimeTrigger

SettingsFactory = Callable[..., Settings]


async def states_of(engine: Engine, run_id: str) -> dict[str, TaskState]:
    return {ti.task_id: ti.state for ti in await engine.store.list_task_instances(run_id)}


def finish(event: Any) -> str:
    return f"resumed with {event}"


async def test_deferred_sensors_are_rearmed_after_a_restart_and_fire(
    make_settings: SettingsFactory,
) -> None:
    with DAG("landing") as dag:
        sensors = [GateSensor(task_id=f"wait{i}", gate=f"g{i}") for i in range(3)]

        @task
        def train() -> str:
            return "trained"

        train_task = train()
        for sensor in sensors:
            sensor >> train_task

    settings = make_settings()
    async with Engine.open(settings, dagbag=bag_of(dag)) as engine:
        run_id = await engine.trigger("landing")
        await until_waiting("g0", "g1", "g2")
        open_gate("g0", "early")  # one fires before the stop
        with anyio.fail_after(10):
            while (await states_of(engine, run_id))["wait0"] is not TaskState.SUCCESS:
                await anyio.lowlevel.checkpoint()
    assert sorted(triggerkit.cleaned_up) == ["g0", "g1", "g2"]  # stopping closed them all
    triggerkit.waiting.clear()

    async with Engine.open(settings, dagbag=bag_of(dag)) as engine:
        await until_waiting("g1", "g2")
        assert engine.triggerer.statistics().running == 2  # g0 already fired: not re-armed
        open_gate("g1", "later")
        open_gate("g2", "later")
        record = await engine.wait(run_id)
        states = await states_of(engine, run_id)
        results = await engine.store.get_results(run_id)
    assert record.state is RunState.SUCCESS
    assert set(states.values()) == {TaskState.SUCCESS}
    assert results[("wait0", -1)] == '"early"'
    assert results[("wait2", -1)] == '"later"'


async def test_a_moment_that_passed_while_down_fires_at_once(
    make_settings: SettingsFactory,
) -> None:
    clock = FakeClock()
    moment = clock.now() + 3600
    with DAG("nightly") as dag:

        @task
        def at_three() -> Defer:
            return Defer(TimeTrigger(moment=moment), timeout=7200)

        at_three()

    settings = make_settings()
    async with Engine.open(settings, dagbag=bag_of(dag), clock=clock) as engine:
        run_id = await engine.trigger("nightly")
        with anyio.fail_after(10):
            while (await states_of(engine, run_id)).get("at_three") is not TaskState.DEFERRED:
                await anyio.lowlevel.checkpoint()

    clock.advance(5000)  # down for longer than the wait: the moment passed meanwhile
    async with Engine.open(settings, dagbag=bag_of(dag), clock=clock) as engine:
        record = await engine.wait(run_id)
        results = await engine.store.get_results(run_id)
    assert record.state is RunState.SUCCESS
    assert '"moment":' in results[("at_three", -1)]


async def test_a_timeout_that_passed_while_down_times_out_at_once(
    make_settings: SettingsFactory,
) -> None:
    clock = FakeClock()
    with DAG("stale") as dag:
        GateSensor(task_id="wait", gate="never", timeout=60)

    settings = make_settings()
    async with Engine.open(settings, dagbag=bag_of(dag), clock=clock) as engine:
        run_id = await engine.trigger("stale")
        await until_waiting("never")
    clock.advance(61)
    async with Engine.open(settings, dagbag=bag_of(dag), clock=clock) as engine:
        record = await engine.wait(run_id)
        ti = (await engine.store.list_task_instances(run_id))[0]
    assert record.state is RunState.FAILED
    assert ti.error == "TriggerTimeoutError: no event within 60s"


async def test_an_event_committed_before_the_stop_resumes_after_the_restart(
    make_settings: SettingsFactory,
) -> None:
    """The trigger fired and the resume was scheduled, but no slot ran it before the stop."""
    with DAG("resume_later") as dag:

        @task
        def submit() -> Defer:
            return Defer(GateTrigger(name="job"), resume=finish)

        submit()

    settings = make_settings(slots=1)
    async with Engine.open(settings, dagbag=bag_of(dag)) as engine:
        run_id = await engine.trigger("resume_later")
        await until_waiting("job")
        engine.scheduler.slots = 0  # no slot for the resume: it stays scheduled
        open_gate("job", "event-42")
        with anyio.fail_after(10):
            while (await states_of(engine, run_id))["submit"] is not TaskState.SCHEDULED:
                await anyio.lowlevel.checkpoint()

    async with Engine.open(settings, dagbag=bag_of(dag)) as engine:
        record = await engine.wait(run_id)
        results = await engine.store.get_results(run_id)
        tries = await engine.store.list_tries(run_id, "submit")
    assert record.state is RunState.SUCCESS
    assert results[("submit", -1)] == '"resumed with event-42"'
    assert [t.try_number for t in tries] == [1]


async def test_a_try_interrupted_by_the_stop_runs_again_without_using_a_retry(
    make_settings: SettingsFactory,
) -> None:
    started = anyio.Event()

    with DAG("interrupted") as dag:

        @task  # no retries: only a free re-run lets it succeed
        async def long_once() -> str:
            if not started.is_set():
                started.set()
                await anyio.sleep_forever()
            return "second try"

        long_once()

    settings = make_settings()
    async with Engine.open(settings, dagbag=bag_of(dag)) as engine:
        run_id = await engine.trigger("interrupted")
        with anyio.fail_after(10):
            await started.wait()

    async with Engine.open(settings, dagbag=bag_of(dag)) as engine:
        record = await engine.wait(run_id)
        (instance,) = await engine.store.list_task_instances(run_id)
        tries = await engine.store.list_tries(run_id, "long_once")
    assert record.state is RunState.SUCCESS
    assert (instance.try_number, instance.max_tries, instance.interrupted_tries) == (2, 2, 1)
    assert [(t.state, t.error) for t in tries] == [
        (TaskState.FAILED, "interrupted: the daemon stopped while this try ran"),
        (TaskState.SUCCESS, None),
    ]


async def test_a_task_interrupted_max_interrupted_tries_times_fails(
    make_settings: SettingsFactory,
) -> None:
    with DAG("crashy") as dag:

        @task
        async def hangs() -> None:
            await anyio.sleep_forever()

        hangs()

    settings = make_settings(max_interrupted_tries=2)
    run_id = ""
    for _ in range(2):  # each time, the engine stops while the try runs
        async with Engine.open(settings, dagbag=bag_of(dag)) as engine:
            run_id = run_id or await engine.trigger("crashy")
            with anyio.fail_after(10):
                while (await states_of(engine, run_id)).get("hangs") is not TaskState.RUNNING:
                    await anyio.lowlevel.checkpoint()

    async with Engine.open(settings, dagbag=bag_of(dag)) as engine:
        record = await engine.wait(run_id)
        (instance,) = await engine.store.list_task_instances(run_id)
    assert record.state is RunState.FAILED
    assert instance.interrupted_tries == 2
    assert instance.error is not None
    assert "for the 2nd time (max_interrupted_tries is 2)" in instance.error
