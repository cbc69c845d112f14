"""Deferral end to end: a task hands its wait to a trigger, frees its slot, and resumes."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

import anyio
import anyio.lowlevel
import pytest
import triggerkit
from triggerkit import (
    GateSensor,
    GateTrigger,
    RaisingTrigger,
    SilentTrigger,
    open_gate,
    until_waiting,
)

from helpers import bag_of
from orchestrator import DAG, BaseOperator, TaskContext, task
from orchestrator.authoring.defer import Defer, defer, deferral_of
from orchestrator.changes import TaskChanged
from orchestrator.clock import FakeClock
from orchestrator.config import Settings
from orchestrator.errors import TaskError
from orchestrator.scheduling.deferred import _next_call
from orchestrator.scheduling.engine import Engine
from orchestrator.state import RunState, TaskState
from orchestrator.store import open_store
from orchestrator.store.records import TaskInstanceRecord
from sensors.base import SensorArgs
from triggers.base import Trigger
from triggers.time import TimeTrigger

SettingsFactory = Callable[..., Settings]


@asynccontextmanager
async def engine_for(settings: Settings, *dags: DAG, **kwargs: Any) -> AsyncIterator[Engine]:
    async with Engine.open(settings, dagbag=bag_of(*dags), **kwargs) as engine:
        yield engine


async def instances(engine: Engine, run_id: str) -> dict[str, TaskInstanceRecord]:
    return {ti.task_id: ti for ti in await engine.store.list_task_instances(run_id)}


async def until_state(engine: Engine, run_id: str, task_id: str, state: TaskState) -> None:
    """Wait (event-driven, with a deadline) until the store shows the task in `state`."""
    with anyio.fail_after(10):
        async with engine.subscribe() as changes:
            current = (await instances(engine, run_id)).get(task_id)
            if current is not None and current.state is state:
                return
            async for change in changes:
                if getattr(change, "task_id", None) == task_id and change.state is state:
                    return


# -- resume targets: module-level, so a restarted engine finds them by name ---------------------


def collect(event: dict[str, Any], job: str) -> dict[str, Any]:
    return {"job": job, "model": event["model"]}


async def collect_async(event: dict[str, Any], job: str) -> str:
    return f"{job}:{event['model']}"


# -- tests --------------------------------------------------------------------------------------


async def test_a_task_defers_frees_its_slot_and_resumes_with_the_event(
    make_settings: SettingsFactory,
) -> None:
    with DAG("remote") as dag:

        @task
        def submit() -> Defer:
            return Defer(GateTrigger(name="job-1"), resume=collect, kwargs={"job": "job-1"})

        @task
        def publish(result: dict[str, Any]) -> str:
            return result["model"]

        publish(submit())

    async with engine_for(make_settings(slots=1), dag) as engine:
        run_id = await engine.trigger("remote")
        await until_state(engine, run_id, "submit", TaskState.DEFERRED)
        assert engine.scheduler.slots_used == 0  # waiting holds no slot
        assert [t.key for t in await engine.store.list_triggers()] == [(run_id, "submit", -1)]
        open_gate("job-1", {"model": "s3://models/7"})
        record = await engine.wait(run_id)

    assert record.state is RunState.SUCCESS
    results = await _results(make_settings(slots=1), run_id)
    assert results["submit"] == {"job": "job-1", "model": "s3://models/7"}
    assert results["publish"] == "s3://models/7"


async def _results(settings: Settings, run_id: str) -> dict[str, Any]:
    async with open_store(settings.state_dir) as store:
        tries = await store.list_tries(run_id, "submit")
        assert [t.try_number for t in tries] == [1]  # resuming continues the same try
        assert await store.list_triggers() == []  # the fired trigger's row went with the resume
        import json

        return {
            task_id: json.loads(v) for (task_id, _), v in (await store.get_results(run_id)).items()
        }


async def test_without_a_resume_target_the_event_is_the_result(
    make_settings: SettingsFactory,
) -> None:
    with DAG("plain") as dag:

        @task
        async def wait_for_it() -> None:
            defer(GateTrigger(name="plain"))  # raises: the Airflow-style call works too

        wait_for_it()

    async with engine_for(make_settings(), dag) as engine:
        run_id = await engine.trigger("plain")
        await until_waiting("plain")
        open_gate("plain", {"rows": 3})
        assert (await engine.wait(run_id)).state is RunState.SUCCESS
        results = await engine.store.get_results(run_id)
    assert results[("wait_for_it", -1)] == '{"rows":3}'


class SubmitJob(BaseOperator):
    def execute(self, context: TaskContext) -> Defer:
        return Defer(GateTrigger(name="op"), resume="execute_complete", kwargs={"attempt": 1})

    async def execute_complete(self, context: TaskContext, event: Any, attempt: int) -> str:
        return f"{context.task_id} got {event} on attempt {attempt}"


async def test_an_operator_resumes_in_a_named_async_method(make_settings: SettingsFactory) -> None:
    with DAG("operator") as dag:
        SubmitJob(task_id="job")

    async with engine_for(make_settings(), dag) as engine:
        run_id = await engine.trigger("operator")
        await until_waiting("op")
        open_gate("op", "done")
        assert (await engine.wait(run_id)).state is RunState.SUCCESS
        results = await engine.store.get_results(run_id)
    assert results[("job", -1)] == '"job got done on attempt 1"'


async def test_a_resume_into_an_async_function(make_settings: SettingsFactory) -> None:
    with DAG("async_resume") as dag:

        @task
        def submit() -> Defer:
            return Defer(GateTrigger(name="a"), resume="collect_async", kwargs={"job": "j"})

        submit()

    async with engine_for(make_settings(), dag) as engine:
        run_id = await engine.trigger("async_resume")
        await until_waiting("a")
        open_gate("a", {"model": "m"})
        await engine.wait(run_id)
        assert (await engine.store.get_results(run_id))[("submit", -1)] == '"j:m"'


async def test_a_thousand_deferrable_sensors_hold_no_slot(make_settings: SettingsFactory) -> None:
    with DAG("many") as dag:
        sensors = [GateSensor(task_id=f"s{i}", gate=f"g{i}") for i in range(1000)]

        @task
        def after(context: TaskContext) -> str:
            return "downstream ran"

        after_task = after()
        for sensor in sensors:
            sensor >> after_task

    async with engine_for(make_settings(slots=2), dag) as engine:
        run_id = await engine.trigger("many")
        await until_waiting(*(f"g{i}" for i in range(1000)))
        assert engine.scheduler.slots_used == 0
        assert engine.triggerer.statistics().running == 1000
        for i in range(1000):
            open_gate(f"g{i}", {"i": i})
        assert (await engine.wait(run_id)).state is RunState.SUCCESS
        states = await instances(engine, run_id)
        assert engine.triggerer.statistics().fired == 1000
        tries = await engine.store.list_tries(run_id, "s7")
    assert {ti.state for ti in states.values()} == {TaskState.SUCCESS}
    assert [t.state for t in tries] == [TaskState.SUCCESS]


async def test_a_sensor_reads_untrusted_arguments_from_params(
    make_settings: SettingsFactory,
) -> None:
    from orchestrator import dag as dag_decorator

    seen: list[SensorArgs] = []

    class Recording(GateSensor):
        def make_trigger(self, args: SensorArgs) -> Trigger:
            seen.append(args)
            return super().make_trigger(args)

    @dag_decorator(dag_id="params")
    def pipeline(gate: str = "default") -> None:
        Recording(task_id="wait", gate=gate)

    built = pipeline()
    async with engine_for(make_settings(), built) as engine:
        run_id = await engine.trigger("params", conf={"gate": "from-conf"})
        await until_waiting("from-conf")
        open_gate("from-conf", 1)
        await engine.wait(run_id)
    assert seen[0]["gate"] == "from-conf"
    assert not seen[0].trusted("gate")


async def test_a_deferral_times_out_on_the_clock_and_fails(make_settings: SettingsFactory) -> None:
    clock = FakeClock()
    with DAG("timeout") as dag:
        GateSensor(task_id="wait", gate="never", timeout=60)

    async with engine_for(make_settings(), dag, clock=clock) as engine:
        run_id = await engine.trigger("timeout")
        await until_waiting("never")
        clock.advance(59)
        await anyio.lowlevel.checkpoint()
        assert (await instances(engine, run_id))["wait"].state is TaskState.DEFERRED
        clock.advance(1)
        record = await engine.wait(run_id)
        ti = (await instances(engine, run_id))["wait"]
    assert record.state is RunState.FAILED
    assert ti.error == "TriggerTimeoutError: no event within 60s"
    assert "never" in triggerkit.cleaned_up  # the timed-out trigger was closed


async def test_soft_fail_skips_on_timeout_and_retries_wait_again(
    make_settings: SettingsFactory,
) -> None:
    clock = FakeClock()
    with DAG("soft") as dag:
        GateSensor(task_id="soft", gate="s", timeout=10, soft_fail=True)
        GateSensor(task_id="retried", gate="r", timeout=10, retries=1, retry_delay=5)

    async with engine_for(make_settings(), dag, clock=clock) as engine:
        run_id = await engine.trigger("soft")
        await until_waiting("s", "r")
        clock.advance(10)
        await until_state(engine, run_id, "retried", TaskState.UP_FOR_RETRY)
        clock.advance(5)
        await until_state(engine, run_id, "retried", TaskState.DEFERRED)
        open_gate("r", "second try")
        record = await engine.wait(run_id)
        states = await instances(engine, run_id)
    assert states["soft"].state is TaskState.SKIPPED
    assert states["retried"].state is TaskState.SUCCESS
    assert states["retried"].try_number == 2
    assert record.state is RunState.SUCCESS


async def test_a_sensor_deferring_at_start_is_announced_once_but_its_retry_is_scheduled_first(
    make_settings: SettingsFactory,
) -> None:
    """`scheduled` then `deferred` in one step: only `deferred` was ever durable, so the feed
    hears that alone on the first try; a retry still announces its `scheduled`."""
    clock = FakeClock()
    with DAG("announced") as dag:
        GateSensor(task_id="wait", gate="a", timeout=10, retries=1, retry_delay=5)

    async with engine_for(make_settings(), dag, clock=clock) as engine:
        async with engine.subscribe() as changes:
            run_id = await engine.trigger("announced")
            await until_waiting("a")
            clock.advance(10)
            await until_state(engine, run_id, "wait", TaskState.UP_FOR_RETRY)
            clock.advance(5)
            await until_state(engine, run_id, "wait", TaskState.DEFERRED)
            open_gate("a", "second try")
            assert (await engine.wait(run_id)).state is RunState.SUCCESS
            seen = []
            while True:
                try:
                    seen.append(changes.receive_nowait())
                except anyio.WouldBlock:
                    break
    states = [c.state for c in seen if isinstance(c, TaskChanged)]
    assert states[:4] == [
        TaskState.DEFERRED,
        TaskState.UP_FOR_RETRY,
        TaskState.SCHEDULED,
        TaskState.DEFERRED,
    ]
    assert states[-1] is TaskState.SUCCESS


@pytest.mark.parametrize(
    ("trigger", "error"),
    [
        (RaisingTrigger(message="bucket vanished"), "RuntimeError: bucket vanished"),
        (SilentTrigger(), "ended without an event"),
    ],
)
async def test_a_failing_trigger_fails_only_its_own_task(
    make_settings: SettingsFactory, trigger: Trigger, error: str
) -> None:
    with DAG("bad_trigger") as dag:

        @task
        def broken() -> Defer:
            return Defer(trigger)

        broken()

        GateSensor(task_id="fine", gate="fine")

    async with engine_for(make_settings(), dag) as engine:
        run_id = await engine.trigger("bad_trigger")
        await until_state(engine, run_id, "broken", TaskState.FAILED)
        open_gate("fine", "ok")
        await engine.wait(run_id)
        states = await instances(engine, run_id)
        assert engine.triggerer.statistics().failed == 1
    assert error in (states["broken"].error or "")
    assert states["fine"].state is TaskState.SUCCESS


async def test_cancelling_a_run_closes_its_triggers(make_settings: SettingsFactory) -> None:
    with DAG("cancel") as dag:
        GateSensor(task_id="wait", gate="c")

    async with engine_for(make_settings(), dag) as engine:
        run_id = await engine.trigger("cancel")
        await until_waiting("c")
        await engine.cancel(run_id)
        assert (await engine.wait(run_id)).state is RunState.CANCELLED
        with anyio.fail_after(10):
            while "c" not in triggerkit.cleaned_up:
                await anyio.lowlevel.checkpoint()
        assert await engine.store.list_triggers() == []
        tries = await engine.store.list_tries(run_id, "wait")
    assert [t.state for t in tries] == [TaskState.CANCELLED]


def nested_resume_target() -> Callable[..., Any]:
    def inner(event: Any) -> Any:
        return event

    return inner


@pytest.mark.parametrize(
    ("request_factory", "error"),
    [
        (
            lambda: Defer(GateTrigger(name="x"), kwargs={"when": object()}),
            "the kwargs passed to the resume target must be JSON-safe",
        ),
        (
            lambda: Defer(GateTrigger(name="x"), resume=nested_resume_target()),
            "give a function defined at the top level of the DAG file",
        ),
        (lambda: Defer("not a trigger"), "Defer needs a Trigger, got str"),  # type: ignore[arg-type]
        (lambda: Defer(GateTrigger(name="x"), timeout=-1), "a duration cannot be negative, got -1"),
    ],
)
async def test_a_bad_deferral_fails_the_task_with_the_reason(
    make_settings: SettingsFactory, request_factory: Callable[[], Defer], error: str
) -> None:
    with DAG("bad_defer") as dag:

        @task
        def bad() -> Defer:
            return request_factory()

        bad()

    async with engine_for(make_settings(), dag) as engine:
        run_id = await engine.trigger("bad_defer")
        assert (await engine.wait(run_id)).state is RunState.FAILED
        ti = (await instances(engine, run_id))["bad"]
    assert error in (ti.error or "")


async def test_a_trigger_class_that_cannot_be_rebuilt_fails_clearly(
    make_settings: SettingsFactory,
) -> None:
    from dataclasses import dataclass

    @dataclass(frozen=True, kw_only=True)
    class LocalTrigger(Trigger):  # defined in a function: no import path finds it again
        pass

    with DAG("local") as dag:

        @task
        def bad() -> Defer:
            return Defer(LocalTrigger())

        bad()

    async with engine_for(make_settings(), dag) as engine:
        run_id = await engine.trigger("local")
        await engine.wait(run_id)
        ti = (await instances(engine, run_id))["bad"]
    assert ti.error is not None and ti.error.startswith("TriggerLoadError: there is no trigger")


async def test_the_triggerer_holds_no_more_than_its_capacity(
    make_settings: SettingsFactory,
) -> None:
    with DAG("capacity") as dag:
        for i in range(5):
            GateSensor(task_id=f"s{i}", gate=f"c{i}")

    async with engine_for(make_settings(triggerer_capacity=2), dag) as engine:
        run_id = await engine.trigger("capacity")
        await until_waiting("c0", "c1")
        stats = engine.triggerer.statistics()
        assert (stats.running, stats.waiting) == (2, 3)
        for i in range(5):
            open_gate(f"c{i}")
        assert (await engine.wait(run_id)).state is RunState.SUCCESS
    assert engine.triggerer.statistics().fired == 5


async def test_a_time_trigger_fires_on_the_injected_clock(make_settings: SettingsFactory) -> None:
    clock = FakeClock()
    with DAG("time") as dag:

        @task
        def later() -> Defer:
            return Defer(TimeTrigger(moment=clock.now() + 3600))

        later()

    async with engine_for(make_settings(), dag, clock=clock) as engine:
        run_id = await engine.trigger("time")
        await until_state(engine, run_id, "later", TaskState.DEFERRED)
        clock.advance(3600)
        assert (await engine.wait(run_id)).state is RunState.SUCCESS


def test_deferrals_that_finish_with_their_event_share_one_encoded_next_call() -> None:
    first = deferral_of(Defer(TimeTrigger(moment=1.0), timeout=60), None)
    again = deferral_of(Defer(TimeTrigger(moment=2.0), timeout=60), None)
    other = deferral_of(Defer(TimeTrigger(moment=1.0), timeout=60, on_timeout="skip"), None)
    resumed = deferral_of(Defer(TimeTrigger(moment=1.0), resume="go_on", kwargs={"a": 1}), None)

    shared = _next_call(first)
    assert _next_call(again) is shared
    for deferral in (first, other, resumed):
        call, text = _next_call(deferral)
        assert (
            json.loads(text)
            == call
            == {
                "target": deferral.resume,
                "kwargs": deferral.resume_kwargs,
                "on_timeout": deferral.on_timeout,
                "timeout": deferral.timeout,
            }
        )
    assert _next_call(other) is not shared and _next_call(resumed) is not _next_call(resumed)


@pytest.mark.parametrize(
    ("timeout", "expected"),
    [
        (60.0, 60.0),  # a float: taken as it is
        (60, 60.0),
        (timedelta(minutes=1), 60.0),
        (None, None),
        (-1.0, "ValueError: a duration cannot be negative, got -1.0"),
        (0.0, "TaskError: a deferral's timeout must be a positive duration, got 0.0"),
        (float("nan"), "TaskError: a deferral's timeout must be a positive duration, got nan"),
        (float("inf"), "TaskError: a deferral's timeout must be a positive duration, got inf"),
        (True, "TypeError: a duration must be a number of seconds or a timedelta, got True"),
    ],
)
def test_a_deferrals_timeout_is_checked_whatever_its_type(timeout: Any, expected: Any) -> None:
    request = Defer(TimeTrigger(moment=1.0), timeout=timeout)
    try:
        made: Any = deferral_of(request, None).timeout
    except (TypeError, ValueError, TaskError) as error:
        made = f"{type(error).__name__}: {error}"
    assert made == expected
    assert type(made) is type(expected)


@pytest.mark.parametrize("kwargs", [{}, {"a": [1, {"b": None}]}])
def test_resume_kwargs_are_stored_as_given(kwargs: dict[str, Any]) -> None:
    assert deferral_of(Defer(TimeTrigger(moment=1.0), kwargs=kwargs), None).resume_kwargs == kwargs


def test_a_stored_deferral_reads_back_as_made_and_resume_kwargs_may_be_left_out() -> None:
    import dataclasses

    from orchestrator.authoring.defer import Deferral

    made = deferral_of(Defer(TimeTrigger(moment=1.0), kwargs={"a": [1]}, timeout=5), None)
    assert Deferral.from_json(made.to_json()) == made
    bare = Deferral.from_json('{"classpath": "triggers.time.TimeTrigger", "kwargs": {}}')
    assert (bare.resume, bare.resume_kwargs, bare.timeout, bare.on_timeout) == (
        None,
        {},
        None,
        "fail",
    )
    with pytest.raises(dataclasses.FrozenInstanceError):
        bare.timeout = 1.0  # type: ignore[misc]
    with pytest.raises(TypeError, match="unexpected keyword argument 'colour'"):
        Deferral.from_json('{"classpath": "x.Y", "kwargs": {}, "colour": "red"}')
