"""HttpSensor through the real engine, against a real HTTP server on 127.0.0.1; a FakeClock
paces the polls, and the input policy guards URLs that come from a run's conf."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from httpserver import HttpServer, Reply, serve
from sensorkit import (
    SettingsFactory,
    WatchedClock,
    engine_for,
    instance,
    results_of,
    states_of,
    until_state,
)

from orchestrator import DAG, dag, task
from orchestrator.errors import DagError
from orchestrator.state import RunState, TaskState
from sensors import HttpSensor

POKE = 5.0
NEXT_POLL = POKE * 1.2  # past the interval and its jitter (up to 10 %)
RUNNING = Reply.json({"job": 42, "state": "running"})
DONE = Reply.json({"job": 42, "state": "done", "model": "s3://models/42"})


@pytest.fixture
def server() -> Iterator[HttpServer]:
    with serve() as running:
        running.script("/jobs/42", RUNNING, RUNNING, DONE)
        yield running


def job_dag(url: str) -> DAG:
    """Wait until the job says it is done, then deploy the model its answer names."""
    with DAG("job") as pipeline:
        done = HttpSensor(
            task_id="done", url=url, json_path="state", json_value="done", poke_interval=POKE
        )

        @task
        def deploy(event: dict[str, Any]) -> str:
            return f"deployed {event['json']['model']}"

        deploy(done.output)
    return pipeline


def untrusted_dag() -> DAG:
    """The URL is a DAG param, so a run's conf can set it: it is untrusted."""

    @dag(dag_id="untrusted")  # type: ignore[untyped-decorator]
    def pipeline(url: str = "https://ci.example.com/jobs/42") -> None:
        HttpSensor(task_id="done", url=url, json_path="state", json_value="done")

    built: DAG = pipeline()
    return built


async def test_the_sensor_polls_on_the_clock_until_the_job_is_done(
    server: HttpServer, make_settings: SettingsFactory
) -> None:
    clock = WatchedClock()
    async with engine_for(make_settings(), job_dag(f"{server.url}/jobs/42"), clock=clock) as engine:
        run_id = await engine.trigger("job")
        for polls in (1, 2):
            await clock.until_sleepers(2)  # the trigger sleeps (beside the timeout timer)
            assert server.hits("/jobs/42") == polls  # one request per interval, no more
            assert (await states_of(engine, run_id))["done"] is TaskState.DEFERRED
            assert engine.scheduler.slots_used == 0
            clock.advance(NEXT_POLL)
        record = await engine.wait(run_id)
        results = await results_of(engine, run_id)

    assert record.state is RunState.SUCCESS
    assert server.hits("/jobs/42") == 3
    event = results["done"]
    assert (event["url"], event["status"]) == (f"{server.url}/jobs/42", 200)
    assert event["json"]["state"] == "done"
    assert results["deploy"] == "deployed s3://models/42"


async def test_an_untrusted_url_to_loopback_is_refused_before_any_request(
    server: HttpServer, make_settings: SettingsFactory
) -> None:
    url = f"{server.url}/jobs/42"
    async with engine_for(make_settings(), untrusted_dag(), clock=WatchedClock()) as engine:
        run_id = await engine.trigger("untrusted", conf={"url": url})
        record = await engine.wait(run_id)
        sensor = await instance(engine, run_id, "done")

    assert record.state is RunState.FAILED
    assert sensor is not None and sensor.error is not None
    assert sensor.error.startswith(
        f"trigger HttpTrigger failed: PolicyError: untrusted URL {url!r} is refused:"
        " 127.0.0.1 is a loopback address"
    )
    assert "add the host or host:port to allowed_hosts" in sensor.error
    assert server.hits() == 0


async def test_an_untrusted_url_to_an_allowed_host_is_polled(
    server: HttpServer, make_settings: SettingsFactory
) -> None:
    clock = WatchedClock()
    settings = make_settings(allowed_hosts=(f"127.0.0.1:{server.port}",))
    async with engine_for(settings, untrusted_dag(), clock=clock) as engine:
        run_id = await engine.trigger("untrusted", conf={"url": f"{server.url}/jobs/42"})
        for _ in range(2):
            await clock.until_sleepers(2)
            clock.advance(NEXT_POLL)
        record = await engine.wait(run_id)
        results = await results_of(engine, run_id)

    assert record.state is RunState.SUCCESS
    assert results["done"]["json"]["model"] == "s3://models/42"
    assert server.hits("/jobs/42") == 3


async def test_an_allowed_host_with_another_port_does_not_admit_this_one(
    server: HttpServer, make_settings: SettingsFactory
) -> None:
    settings = make_settings(allowed_hosts=(f"127.0.0.1:{server.port + 1}",))
    async with engine_for(settings, untrusted_dag(), clock=WatchedClock()) as engine:
        run_id = await engine.trigger("untrusted", conf={"url": f"{server.url}/jobs/42"})
        assert (await engine.wait(run_id)).state is RunState.FAILED
        sensor = await instance(engine, run_id, "done")

    assert sensor is not None and "is refused" in (sensor.error or "")
    assert server.hits() == 0


async def test_an_untrusted_value_that_is_no_url_fails_the_sensor_clearly(
    make_settings: SettingsFactory,
) -> None:
    async with engine_for(make_settings(), untrusted_dag(), clock=WatchedClock()) as engine:
        run_id = await engine.trigger("untrusted", conf={"url": "file:///etc/passwd"})
        await until_state(engine, run_id, "done", TaskState.FAILED)
        sensor = await instance(engine, run_id, "done")

    assert sensor is not None
    assert sensor.error == (
        "cannot start waiting: ValueError: url 'file:///etc/passwd' must use http or https,"
        " not 'file'"
    )


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"url": "ftp://example.com/x"}, "must use http or https, not 'ftp'"),
        ({"url": "https://example.com", "json_value": "done"}, "json_value needs json_path"),
        ({"url": "https://example.com", "expect_status": (700,)}, "expect_status must be HTTP"),
        ({"url": "https://example.com", "method": "get"}, "method must be one of"),
    ],
)
def test_bad_arguments_are_a_dag_error_at_the_sensor_line(
    arguments: dict[str, Any], message: str
) -> None:
    with DAG("bad"), pytest.raises(DagError, match=message) as raised:
        HttpSensor(task_id="bad", **arguments)
    assert raised.value.file == __file__
