"""S3KeySensor through the real engine, against moto's S3 server on loopback; a FakeClock paces
the polls, so an object that lands between two polls is seen only when the clock moves on."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import pytest
from aiobotocore.session import get_session
from s3server import REGION, running_s3_server
from sensorkit import (
    SettingsFactory,
    WatchedClock,
    engine_for,
    instance,
    results_of,
    states_of,
    until_state,
)

from orchestrator import DAG, task
from orchestrator.errors import DagError
from orchestrator.state import RunState, TaskState
from sensors import S3KeySensor

if TYPE_CHECKING:
    from types_aiobotocore_s3 import S3Client

BUCKET = "lake"
POKE = 30.0  # the sensor's poll interval, on the FakeClock
NEXT_POLL = POKE * 1.2  # past the interval and its jitter (up to 10 %)


@pytest.fixture
def endpoint_url(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    with running_s3_server(monkeypatch) as url:
        yield url


@asynccontextmanager
async def s3_client(endpoint_url: str) -> AsyncIterator[S3Client]:
    session = get_session()
    async with session.create_client("s3", endpoint_url=endpoint_url, region_name=REGION) as client:
        yield client


def sensor_dag(endpoint_url: str, bucket: str = BUCKET) -> DAG:
    """Wait for the day's _SUCCESS object, then load what it announces; a bystander task too."""
    with DAG("lake") as pipeline:
        ready = S3KeySensor(
            task_id="ready",
            bucket=bucket,
            key="raw/2026-11-21/_SUCCESS",
            endpoint_url=endpoint_url,
            poke_interval=POKE,
        )

        @task
        def load(event: dict[str, Any]) -> str:
            return f"loading s3://{event['bucket']}/{event['key']} ({event['etag']})"

        @task
        def bystander() -> str:
            return "unaffected"

        load(ready.output)
        bystander()
    return pipeline


async def test_an_object_that_lands_between_polls_is_seen_on_the_next_poll(
    endpoint_url: str, make_settings: SettingsFactory
) -> None:
    clock = WatchedClock()
    body = b"ok\n"
    async with s3_client(endpoint_url) as client:
        await client.create_bucket(Bucket=BUCKET)
        async with engine_for(make_settings(), sensor_dag(endpoint_url), clock=clock) as engine:
            run_id = await engine.trigger("lake")
            await until_state(engine, run_id, "ready", TaskState.DEFERRED)
            await until_state(engine, run_id, "bystander", TaskState.SUCCESS)
            assert engine.scheduler.slots_used == 0  # the bystander is done; the wait holds none
            await clock.until_sleepers(2)  # the first poll found nothing; the trigger sleeps
            await client.put_object(Bucket=BUCKET, Key="raw/2026-11-21/_SUCCESS", Body=body)
            assert (await states_of(engine, run_id))["ready"] is TaskState.DEFERRED
            clock.advance(NEXT_POLL)
            record = await engine.wait(run_id)
            results = await results_of(engine, run_id)

    etag = hashlib.md5(body).hexdigest()  # S3's ETag of a single-part upload
    assert record.state is RunState.SUCCESS
    event = results["ready"]
    assert (event["bucket"], event["key"], event["size"]) == (BUCKET, "raw/2026-11-21/_SUCCESS", 3)
    assert event["etag"] == etag
    assert results["load"] == f"loading s3://{BUCKET}/raw/2026-11-21/_SUCCESS ({etag})"


async def test_an_object_already_there_completes_the_sensor_without_time_passing(
    endpoint_url: str, make_settings: SettingsFactory
) -> None:
    clock = WatchedClock()
    async with s3_client(endpoint_url) as client:
        await client.create_bucket(Bucket=BUCKET)
        await client.put_object(Bucket=BUCKET, Key="raw/2026-11-21/_SUCCESS", Body=b"")
        async with engine_for(make_settings(), sensor_dag(endpoint_url), clock=clock) as engine:
            run_id = await engine.trigger("lake")
            record = await engine.wait(run_id)
            results = await results_of(engine, run_id)

    assert record.state is RunState.SUCCESS
    assert results["ready"]["size"] == 0
    assert results["ready"]["etag"] == hashlib.md5(b"").hexdigest()


async def test_a_missing_bucket_fails_the_sensor_with_the_s3_error_and_nothing_else(
    endpoint_url: str, make_settings: SettingsFactory
) -> None:
    pipeline = sensor_dag(endpoint_url, bucket="no-such-lake")
    async with engine_for(make_settings(), pipeline, clock=WatchedClock()) as engine:
        run_id = await engine.trigger("lake")
        record = await engine.wait(run_id)
        sensor = await instance(engine, run_id, "ready")
        states = await states_of(engine, run_id)
        results = await results_of(engine, run_id)

    assert record.state is RunState.FAILED
    assert sensor is not None and sensor.state is TaskState.FAILED
    assert sensor.error is not None
    assert sensor.error.startswith("trigger S3Trigger failed: TriggerError: S3 HeadBucket")
    assert "bucket 'no-such-lake'" in sensor.error
    assert "NoSuchBucket" in sensor.error
    assert states["load"] is TaskState.UPSTREAM_FAILED
    assert states["bystander"] is TaskState.SUCCESS
    assert results["bystander"] == "unaffected"


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"key": "a", "prefix": "b/"}, "give exactly one of key, prefix or wildcard"),
        ({"bucket": "lake/raw"}, "must be a bucket name, without '/'"),
        ({"endpoint_url": "localhost:9000"}, "endpoint_url must start with http:// or https://"),
        ({"wildcard": "raw/day.csv", "key": None}, "has no \\*, \\? or \\["),
    ],
)
def test_bad_arguments_are_a_dag_error_at_the_sensor_line(
    arguments: dict[str, Any], message: str
) -> None:
    given = {"bucket": BUCKET, "key": "raw/_SUCCESS", **arguments}
    with DAG("bad"), pytest.raises(DagError, match=message) as raised:
        S3KeySensor(task_id="bad", **given)
    assert raised.value.file == __file__
