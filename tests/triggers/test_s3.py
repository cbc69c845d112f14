"""S3Trigger against moto's S3 server on loopback, reached with aiobotocore; time is a FakeClock."""

from __future__ import annotations

import hashlib
import json
import logging
import socket
from collections.abc import AsyncIterator, Iterator
from contextlib import aclosing, asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import anyio
import pytest
from aiobotocore.session import AioSession, get_session
from botocore.exceptions import ClientError, EndpointConnectionError, ReadTimeoutError, SSLError
from s3server import (
    put_objects_in_process,
    require_authentication,
    running_s3_server,
    use_dummy_credentials,
)

import triggers.s3
from orchestrator.clock import FakeClock
from orchestrator.errors import TriggerError, TriggerLoadError
from triggers.base import JSON, TriggerEvent, TriggerRuntime, load_trigger, set_runtime
from triggers.s3 import S3Trigger
from triggers.s3_errors import is_transient

if TYPE_CHECKING:
    from types_aiobotocore_s3 import S3Client

BUCKET = "landing-zone"


class RecordingClock(FakeClock):
    """A FakeClock that remembers each sleep's length and lets a test wait for the next sleep."""

    def __init__(self) -> None:
        super().__init__()
        self.delays: list[float] = []
        self._asleep = anyio.Event()

    async def sleep_until(self, deadline: float) -> None:
        self.delays.append(deadline - self.now())
        self._asleep.set()
        await super().sleep_until(deadline)

    async def next_sleep(self) -> None:
        """Wait until the trigger sleeps again: the poll before it is over."""
        with anyio.fail_after(10):
            await self._asleep.wait()
        self._asleep = anyio.Event()

    async def tick(self) -> None:
        """Wake the sleeping trigger and wait until its next poll is over."""
        self.advance(self.delays[-1])
        await self.next_sleep()


@dataclass
class Host:
    """A stand-in triggerer: runs one trigger in a task and keeps its events and cursors."""

    clock: RecordingClock
    events: list[TriggerEvent] = field(default_factory=list)
    saved: list[JSON] = field(default_factory=list)

    @property
    def keys(self) -> list[str]:
        return [event.payload["key"] for event in self.events]

    async def save_cursor(self, cursor: JSON) -> None:
        self.saved.append(cursor)

    async def consume(self, trigger: S3Trigger, cursor: JSON, persist: bool) -> None:
        save = self.save_cursor if persist else None
        set_runtime(TriggerRuntime(clock=self.clock, cursor=cursor, save_cursor=save))
        async with aclosing(trigger.run()) as events:
            async for event in events:
                self.events.append(event)


@asynccontextmanager
async def hosting(
    trigger: S3Trigger, *, cursor: JSON = None, persist: bool = True
) -> AsyncIterator[Host]:
    """Run `trigger` until the block ends; entered once its first poll is over."""
    host = Host(RecordingClock())
    async with anyio.create_task_group() as group:
        group.start_soon(host.consume, trigger, cursor, persist)
        await host.clock.next_sleep()
        yield host
        group.cancel_scope.cancel()


@contextmanager
def runtime(clock: FakeClock) -> Iterator[None]:
    """Make `clock` the trigger runtime's clock in this task, for triggers run without a host."""
    token = set_runtime(TriggerRuntime(clock=clock))
    try:
        yield
    finally:
        token.var.reset(token)


async def first_event(trigger: S3Trigger, clock: FakeClock) -> TriggerEvent:
    """Run `trigger` in this task, without a host, until its first event (or error)."""
    with runtime(clock), anyio.fail_after(10):
        async with aclosing(trigger.run()) as events:
            return await anext(events)


async def advance_while_asleep(clock: RecordingClock) -> None:
    """Let every sleep of the trigger end at once (its lengths are in `clock.delays`)."""
    while True:
        await clock.next_sleep()
        clock.advance(clock.delays[-1])


@pytest.fixture
def endpoint(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    with running_s3_server(monkeypatch) as endpoint_url:
        yield endpoint_url


@asynccontextmanager
async def s3_client(endpoint: str) -> AsyncIterator[S3Client]:
    """A client for the test's own setup (buckets, uploads)."""
    async with get_session().create_client("s3", endpoint_url=endpoint) as client:
        yield client


@pytest.fixture
def listings(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Every ListObjectsV2 response the trigger parses (it builds its session with get_session)."""
    responses: list[dict[str, Any]] = []

    def session_with_hook() -> AioSession:
        session = get_session()
        session.register(
            "after-call.s3.ListObjectsV2", lambda parsed, **_: responses.append(parsed)
        )
        return session

    monkeypatch.setattr(triggers.s3, "get_session", session_with_hook)
    return responses


def s3_trigger(endpoint: str, **fields: Any) -> S3Trigger:
    return S3Trigger(bucket=BUCKET, endpoint_url=endpoint, jitter=0.0, **fields)


def etag_of(body: bytes) -> str:
    return hashlib.md5(body).hexdigest()


# -- events ----------------------------------------------------------------------------------------


async def test_a_key_fires_once_per_new_version(endpoint: str) -> None:
    trigger = s3_trigger(endpoint, key="reports/daily.csv", poll_interval=10.0)
    async with s3_client(endpoint) as s3:
        await s3.create_bucket(Bucket=BUCKET)
        async with hosting(trigger) as host:
            await host.clock.tick()
            assert host.events == []
            await put_versions(s3, host.clock)

    first, second = host.events
    assert first.payload["etag"] == etag_of(b"v1")
    assert first.dedup_key == f"s3://{BUCKET}/reports/daily.csv@{etag_of(b'v1')}"
    assert second.payload | {"last_modified": None} == {
        "bucket": BUCKET,
        "key": "reports/daily.csv",
        "size": 3,
        "etag": etag_of(b"v2!"),
        "last_modified": None,
    }
    assert datetime.fromisoformat(second.payload["last_modified"]).utcoffset() == timedelta(0)
    assert host.clock.delays == [10.0] * 5  # poll_interval, jitter 0


async def put_versions(s3: S3Client, clock: RecordingClock) -> None:
    """v1, v1 again (the same ETag: no event), then v2, each followed by a poll."""
    for body in (b"v1", b"v1", b"v2!"):
        await s3.put_object(Bucket=BUCKET, Key="reports/daily.csv", Body=body)
        await clock.tick()


async def test_a_prefix_of_3000_keys_yields_each_once_and_resumes_from_its_cursor(
    endpoint: str, listings: list[dict[str, Any]]
) -> None:
    async with s3_client(endpoint) as s3:
        await s3.create_bucket(Bucket=BUCKET)
        keys = [f"incoming/{number:05d}.json" for number in range(3000)]
        put_objects_in_process(BUCKET, [(key, b"{}") for key in [*keys, "elsewhere/x"]])
        trigger = s3_trigger(endpoint, prefix="incoming/")

        async with hosting(trigger) as host:
            assert sorted(host.keys) == keys  # three pages of 1,000, each key once
            assert [page["KeyCount"] for page in listings] == [1000, 1000, 1000]
            assert host.saved[-1]["start_after"] == "incoming/02999.json"
            await host.clock.tick()
            assert len(host.events) == 3000
            assert listings[-1]["StartAfter"] == "incoming/02999.json"

        listings.clear()
        for name in ("incoming/03000.json", "incoming/03001.json"):
            await s3.put_object(Bucket=BUCKET, Key=name, Body=b"{}")
        async with hosting(trigger, cursor=host.saved[-1]) as resumed:
            assert resumed.keys == ["incoming/03000.json", "incoming/03001.json"]
            assert [(page["StartAfter"], page["KeyCount"]) for page in listings] == [
                ("incoming/02999.json", 2)
            ]
            assert resumed.saved[-1]["start_after"] == "incoming/03001.json"


async def test_a_full_scan_catches_overwrites_and_keys_sorting_before_the_cursor(
    endpoint: str, listings: list[dict[str, Any]]
) -> None:
    trigger = s3_trigger(endpoint, prefix="p/", full_scan_every=2)
    async with s3_client(endpoint) as s3:
        await s3.create_bucket(Bucket=BUCKET)
        for key in ("p/b", "p/c"):
            await s3.put_object(Bucket=BUCKET, Key=key, Body=b"one")
        async with hosting(trigger, persist=False) as host:
            assert host.keys == ["p/b", "p/c"]
            await s3.put_object(Bucket=BUCKET, Key="p/a", Body=b"early")
            await s3.put_object(Bucket=BUCKET, Key="p/b", Body=b"two")
            await host.clock.tick()  # poll 2: a full scan
            await host.clock.tick()  # poll 3: from the in-memory cursor again

    assert host.keys == ["p/b", "p/c", "p/a", "p/b"]
    assert host.events[-1].payload["etag"] == etag_of(b"two")
    assert [page.get("StartAfter") for page in listings] == [None, None, "p/c"]


@pytest.mark.parametrize(
    ("modified_since", "expected"),
    [
        ("2001-01-01T00:00:00+00:00", ["p/a", "p/b", "p/c"]),  # newer than the cursor: unseen
        ("2999-01-01T00:00:00+00:00", ["p/c"]),  # the earlier run listed p/a and p/b
    ],
)
async def test_a_resumed_full_scan_skips_what_the_earlier_run_already_listed(
    endpoint: str, modified_since: str, expected: list[str]
) -> None:
    trigger = s3_trigger(endpoint, prefix="p/", full_scan_every=1)
    cursor = {"start_after": "p/b", "modified_since": modified_since}
    async with s3_client(endpoint) as s3:
        await s3.create_bucket(Bucket=BUCKET)
        for key in ("p/a", "p/b", "p/c"):
            await s3.put_object(Bucket=BUCKET, Key=key, Body=b"x")
        async with hosting(trigger, cursor=cursor) as host:
            assert host.keys == expected


@pytest.mark.parametrize(
    "cursor", ["p/b", {"start_after": 5}, {"start_after": "p/b", "modified_since": "yesterday"}]
)
async def test_an_unreadable_cursor_is_ignored_with_a_warning(
    endpoint: str, cursor: JSON, caplog: pytest.LogCaptureFixture
) -> None:
    trigger = s3_trigger(endpoint, prefix="p/")
    async with s3_client(endpoint) as s3:
        await s3.create_bucket(Bucket=BUCKET)
        put_objects_in_process(BUCKET, [("p/a", b"x"), ("p/b", b"x"), ("p/c", b"x")])
        async with hosting(trigger, cursor=cursor) as host:
            assert host.keys == ["p/a", "p/b", "p/c"]  # listed from the start: nothing lost
    assert "cannot read" in caplog.text


async def test_a_wildcard_matches_whole_keys_and_lists_only_its_literal_prefix(
    endpoint: str, listings: list[dict[str, Any]]
) -> None:
    trigger = s3_trigger(endpoint, wildcard="raw/2026-*/part-*.parquet")
    matching = ["raw/2026-01/deep/part-9.parquet", "raw/2026-01/part-1.parquet"]
    others = ["raw/2026-01/part-1.csv", "raw/2025-12/part-1.parquet", "raw/2026-01/x.parquet"]
    async with s3_client(endpoint) as s3:
        await s3.create_bucket(Bucket=BUCKET)
        put_objects_in_process(BUCKET, [(key, b"PAR1") for key in [*matching, *others]])
        async with hosting(trigger) as host:
            assert host.keys == matching  # fnmatch's * crosses '/' in keys, as documented
            assert listings[0]["Prefix"] == "raw/2026-"


async def test_min_size_waits_for_a_version_big_enough(endpoint: str) -> None:
    async with s3_client(endpoint) as s3:
        await s3.create_bucket(Bucket=BUCKET)
        await s3.put_object(Bucket=BUCKET, Key="in/a.bin", Body=b"tiny")
        await s3.put_object(Bucket=BUCKET, Key="in/b.bin", Body=b"x" * 64)
        assert await s3_trigger(endpoint, key="in/a.bin", min_size=10).poll() is None

        listed = await s3_trigger(endpoint, prefix="in/", min_size=10).poll()
        assert listed is not None
        assert listed.payload["key"] == "in/b.bin"

        await s3.put_object(Bucket=BUCKET, Key="in/a.bin", Body=b"y" * 10)
        grown = await s3_trigger(endpoint, key="in/a.bin", min_size=10).poll()
        assert grown is not None
        assert grown.payload["size"] == 10


async def test_a_marker_fires_once_and_counts_the_other_keys(endpoint: str) -> None:
    trigger = s3_trigger(endpoint, prefix="batch/7/", marker="_SUCCESS")
    async with s3_client(endpoint) as s3:
        await s3.create_bucket(Bucket=BUCKET)
        for part in range(3):
            await s3.put_object(Bucket=BUCKET, Key=f"batch/7/part-{part}", Body=b"rows")
        assert await trigger.poll() is None

        async with hosting(trigger) as host:
            await s3.put_object(Bucket=BUCKET, Key="batch/7/_SUCCESS", Body=b"")
            await host.clock.tick()
            await host.clock.tick()

    [event] = host.events
    assert event.payload["key"] == "batch/7/_SUCCESS"
    assert event.payload["key_count"] == 3
    assert event.payload["size"] == 0


# -- failures --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "where",
    [{"key": "a.csv"}, {"prefix": "in/"}, {"prefix": "in/", "marker": "_SUCCESS"}],
    ids=["key", "prefix", "marker"],
)
async def test_a_missing_bucket_fails_at_once_naming_no_such_bucket(
    endpoint: str, where: dict[str, str]
) -> None:
    trigger = S3Trigger(bucket="no-such-bucket", endpoint_url=endpoint, **where)
    clock = RecordingClock()
    with pytest.raises(TriggerError) as caught:
        await first_event(trigger, clock)
    message = str(caught.value)
    assert "NoSuchBucket" in message
    assert "'no-such-bucket'" in message
    assert endpoint in message
    assert clock.delays == []  # permanent: no retry
    with pytest.raises(TriggerError, match="NoSuchBucket"):
        await trigger.poll()


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


async def test_an_unreachable_endpoint_backs_off_then_gives_up(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    use_dummy_credentials(monkeypatch)
    unreachable = f"http://127.0.0.1:{closed_port()}"
    trigger = S3Trigger(
        bucket=BUCKET,
        prefix="in/",
        endpoint_url=unreachable,
        poll_interval=1.0,
        max_poll_interval=5.0,
        jitter=0.0,
        max_attempts=4,
    )
    clock = RecordingClock()
    with runtime(clock), anyio.fail_after(10):
        async with anyio.create_task_group() as group:
            group.start_soon(advance_while_asleep, clock)
            with pytest.raises(TriggerError) as caught:
                async with aclosing(trigger.run()) as events:
                    await anext(events)
            group.cancel_scope.cancel()
    assert clock.delays == [2.0, 4.0, 5.0]  # doubling, capped by max_poll_interval
    assert "failed 4 time(s) in a row" in str(caught.value)
    assert "EndpointConnectionError" in str(caught.value)
    assert unreachable in str(caught.value)
    warnings = [r for r in caplog.records if r.name == "triggers.s3"]
    assert [r.levelno for r in warnings] == [logging.WARNING] * 3


async def test_throttling_backs_off_and_recovers(
    endpoint: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    calls = 0

    def slow_down_twice(**_: Any) -> None:
        nonlocal calls
        calls += 1
        if calls <= 2:
            response: Any = {
                "Error": {"Code": "SlowDown", "Message": "Please reduce your request rate."},
                "ResponseMetadata": {"HTTPStatusCode": 503},
            }
            raise ClientError(response, "ListObjectsV2")

    def throttled_session() -> AioSession:
        session = get_session()
        session.register("before-call.s3.ListObjectsV2", slow_down_twice)
        return session

    monkeypatch.setattr(triggers.s3, "get_session", throttled_session)
    trigger = s3_trigger(endpoint, prefix="in/", poll_interval=3.0)
    async with s3_client(endpoint) as s3:
        await s3.create_bucket(Bucket=BUCKET)
        await s3.put_object(Bucket=BUCKET, Key="in/file", Body=b"data")
        clock = RecordingClock()
        with runtime(clock), anyio.fail_after(10):
            async with anyio.create_task_group() as group, aclosing(trigger.run()) as events:
                group.start_soon(advance_while_asleep, clock)
                event = await anext(events)
                group.cancel_scope.cancel()
    assert event.payload["key"] == "in/file"
    assert clock.delays == [6.0, 12.0]
    warnings = [r.getMessage() for r in caplog.records if r.name == "triggers.s3"]
    assert ["SlowDown" in message for message in warnings] == [True, True]


@pytest.mark.parametrize(
    ("where", "reported"),
    [
        ({"prefix": "in/"}, "InvalidAccessKeyId"),
        ({"key": "in/a"}, "HTTP 403 Forbidden \\(access denied or invalid credentials\\)"),
    ],
    ids=["listing", "head"],
)
async def test_unknown_credentials_fail_at_once_when_the_server_checks_them(
    endpoint: str, where: dict[str, str], reported: str
) -> None:
    async with s3_client(endpoint) as s3:
        await s3.create_bucket(Bucket=BUCKET)
    require_authentication(endpoint)
    clock = RecordingClock()
    trigger = s3_trigger(endpoint, **where)
    with pytest.raises(TriggerError, match=reported):
        await first_event(trigger, clock)
    assert clock.delays == []


async def test_an_unknown_profile_is_reported(endpoint: str) -> None:
    trigger = s3_trigger(endpoint, key="k", profile="no-such-profile")
    with pytest.raises(TriggerError, match="no-such-profile"):
        await trigger.poll()


def client_error(code: str, status: int | None = None) -> ClientError:
    response: Any = {"Error": {"Code": code, "Message": "from the test"}}
    if status is not None:
        response["ResponseMetadata"] = {"HTTPStatusCode": status}
    return ClientError(response, "ListObjectsV2")


@pytest.mark.parametrize(
    ("error", "transient"),
    [
        (client_error("SlowDown", 503), True),
        (client_error("ThrottlingException"), True),
        (client_error("RequestLimitExceeded"), True),
        (client_error("InternalError", 500), True),
        (client_error("BadGateway", 502), True),
        (client_error("AccessDenied", 403), False),
        (client_error("SignatureDoesNotMatch", 403), False),
        (client_error("404", 404), False),
        (EndpointConnectionError(endpoint_url="http://x"), True),
        (ReadTimeoutError(endpoint_url="http://x"), True),
        (SSLError(endpoint_url="http://x", error="bad certificate"), False),
    ],
)
def test_which_errors_are_transient(error: Any, transient: bool) -> None:
    assert is_transient(error) is transient


# -- the value -------------------------------------------------------------------------------------


def test_a_trigger_round_trips_through_json() -> None:
    trigger = S3Trigger(
        bucket=BUCKET,
        prefix="in/",
        marker="_SUCCESS",
        poll_interval=2.5,
        endpoint_url="http://127.0.0.1:9000",
        region_name="eu-west-1",
        profile="etl",
    )
    classpath, kwargs = trigger.serialize()
    assert classpath == "triggers.s3.S3Trigger"
    assert load_trigger(classpath, json.loads(json.dumps(kwargs))) == trigger


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({}, "exactly one of key, prefix or wildcard \\(got none\\)"),
        (
            {"key": "a", "prefix": "b/"},
            "exactly one of key, prefix or wildcard \\(got key, prefix\\)",
        ),
        ({"key": ""}, "key must name an object"),
        ({"wildcard": "raw/data.csv"}, "has no \\*, \\? or \\["),
        ({"key": "a", "marker": "_SUCCESS"}, "marker needs prefix"),
        ({"prefix": "p/", "marker": ""}, "marker must name an object"),
        ({"prefix": "p/", "marker": "_SUCCESS", "min_size": 1}, "min_size does not apply"),
        ({"prefix": "p/", "min_size": -1}, "min_size must be at least 0"),
        ({"prefix": "p/", "min_size": 1.5}, "min_size must be a finite int"),
        ({"prefix": "p/", "poll_interval": 0}, "poll_interval must be above 0"),
        ({"prefix": "p/", "poll_interval": float("nan")}, "poll_interval must be a finite float"),
        (
            {"prefix": "p/", "max_poll_interval": 1.0},
            "max_poll_interval \\(1.0\\) must be at least",
        ),
        ({"prefix": "p/", "jitter": 1.0}, "jitter is a fraction"),
        ({"prefix": "p/", "max_attempts": 0}, "max_attempts must be at least 1"),
        ({"prefix": "p/", "full_scan_every": True}, "full_scan_every must be a finite int"),
        ({"prefix": "p/", "endpoint_url": "127.0.0.1:9000"}, "must start with http://"),
        ({"prefix": "p/", "region_name": ""}, "region_name must be None"),
        ({"prefix": 7}, "prefix must be a string or None"),
    ],
)
def test_bad_fields_are_rejected_with_a_reason(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        S3Trigger(bucket=BUCKET, **fields)
    with pytest.raises(TriggerLoadError, match=message):
        load_trigger("triggers.s3.S3Trigger", {"bucket": BUCKET, **fields})


def test_a_bucket_is_a_name_not_a_path() -> None:
    with pytest.raises(ValueError, match="bucket must be a non-empty string"):
        S3Trigger(bucket="", prefix="p/")
    with pytest.raises(ValueError, match="without '/'"):
        S3Trigger(bucket="data/in", prefix="p/")
