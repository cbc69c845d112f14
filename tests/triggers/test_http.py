"""HttpTrigger against a real HTTP server on loopback; time moves only with FakeClock."""

from __future__ import annotations

import gzip
import hashlib
import logging
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import aclosing, asynccontextmanager, contextmanager
from typing import Any

import anyio
import pytest
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from httpserver import HttpServer, Reply, serve

from orchestrator.clock import FakeClock
from orchestrator.errors import PolicyError, TriggerError, TriggerLoadError
from orchestrator.policy import InputPolicy
from triggers.base import TriggerEvent, TriggerRuntime, load_trigger, set_runtime
from triggers.http import HttpTrigger


@contextmanager
def using(runtime: TriggerRuntime) -> Iterator[None]:
    """Make `runtime` current in this task for the block."""
    token = set_runtime(runtime)
    try:
        yield
    finally:
        token.var.reset(token)


async def _collect(
    trigger: HttpTrigger, runtime: TriggerRuntime, send: MemoryObjectSendStream[TriggerEvent]
) -> None:
    set_runtime(runtime)  # this task's own context: nothing leaks into the test
    async with send, aclosing(trigger.run()) as events:
        async for event in events:
            await send.send(event)


@asynccontextmanager
async def running(
    trigger: HttpTrigger, clock: FakeClock
) -> AsyncIterator[MemoryObjectReceiveStream[TriggerEvent]]:
    """Run the trigger in a task for the block; its events arrive on the yielded stream."""
    send, receive = anyio.create_memory_object_stream[TriggerEvent](10)
    async with anyio.create_task_group() as group:
        group.start_soon(_collect, trigger, TriggerRuntime(clock=clock), send)
        with receive:
            yield receive
        group.cancel_scope.cancel()


async def until(condition: Callable[[], bool]) -> None:
    """Wait (with a deadline) until `condition` holds: the trigger works in another task."""
    with anyio.fail_after(10):
        # The server counts in its own thread and FakeClock has no "someone sleeps" event:
        # look again every millisecond, under a deadline.
        while not condition():  # noqa: ASYNC110
            await anyio.sleep(0.001)


async def asleep_after(server: HttpServer, clock: FakeClock, hits: int) -> None:
    """Wait until the server has seen `hits` requests and the trigger sleeps on the clock."""
    await until(lambda: server.hits() == hits and clock.sleepers == 1)


def wake_after(clock: FakeClock, seconds: float) -> None:
    """Check that the trigger sleeps exactly `seconds`: not woken just before, woken at it."""
    start = clock.now()
    clock.advance(seconds - 0.01)
    assert clock.sleepers == 1, f"the trigger woke before {seconds} s"
    clock.set(start + seconds)
    assert clock.sleepers == 0, f"the trigger did not wake at {seconds} s"


def key_of(url: str, status: int, body: bytes) -> str:
    return f"{url}:{status}:{hashlib.sha256(body).hexdigest()[:16]}"


async def next_event(events: MemoryObjectReceiveStream[TriggerEvent]) -> TriggerEvent:
    with anyio.fail_after(10):
        return await events.receive()


# -- polling --------------------------------------------------------------------------------------


async def test_fires_once_the_status_is_expected_polling_at_the_interval() -> None:
    with serve() as server:
        server.script("/ready", Reply(status=404), Reply(status=404), Reply.text("ok"))
        url, clock = f"{server.url}/ready", FakeClock()
        trigger = HttpTrigger(url=url, poll_interval=5, jitter=0)

        async with running(trigger, clock) as events:
            for hits in (1, 2):
                await asleep_after(server, clock, hits)
                wake_after(clock, 5)
            event = await next_event(events)

        assert event.payload == {"url": url, "status": 200, "json": None, "text": "ok"}
        assert event.dedup_key == key_of(url, 200, b"ok")
        assert server.hits() == 3


async def test_keeps_polling_and_fires_again_only_for_a_new_passing_response() -> None:
    with serve() as server:
        first, second = Reply.json({"v": 1}), Reply.json({"v": 2})
        server.script("/v", first, Reply(status=404), first, second)
        clock = FakeClock()

        async with running(HttpTrigger(url=f"{server.url}/v", jitter=0), clock) as events:
            assert (await next_event(events)).payload["json"] == {"v": 1}
            for hits in (1, 2, 3):
                await asleep_after(server, clock, hits)
                wake_after(clock, 5)
            assert (await next_event(events)).payload["json"] == {"v": 2}
            with pytest.raises(anyio.WouldBlock):  # {"v": 1} again, after a 404: no event
                events.receive_nowait()


async def test_backs_off_after_5xx_then_resets(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with serve() as server:
        server.script("/job", Reply(status=503), Reply(status=500), Reply(status=502), Reply())
        clock = FakeClock()
        trigger = HttpTrigger(
            url=f"{server.url}/job", poll_interval=1, backoff=2, max_poll_interval=3, jitter=0
        )

        async with running(trigger, clock) as events:
            for hits, interval in ((1, 2), (2, 3), (3, 3)):  # 1 * 2, then capped at 3
                await asleep_after(server, clock, hits)
                wake_after(clock, interval)
            event = await next_event(events)
            await asleep_after(server, clock, 4)
            wake_after(clock, 1)  # a good answer resets the interval

        assert event.payload["status"] == 200
        assert "answered 503" in caplog.text
        assert "answered 502" in caplog.text


async def test_a_refused_connection_is_logged_and_backed_off(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with serve() as server:
        url = f"{server.url}/gone"
    caplog.set_level(logging.WARNING)  # the server is stopped: its port refuses connections
    clock = FakeClock()
    trigger = HttpTrigger(url=url, poll_interval=1, backoff=2, jitter=0)

    assert await trigger.poll() is None
    async with running(trigger, clock):
        for interval in (2, 4):
            await until(lambda: clock.sleepers == 1)
            wake_after(clock, interval)
        await until(lambda: clock.sleepers == 1)  # the third failure, asleep again

    assert caplog.text.count("ConnectError") == 4  # poll(), then three tries in run()


async def test_a_hanging_server_times_out_and_counts_as_failed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    release = threading.Event()
    with serve() as server:
        server.script("/slow", Reply(hold=release))
        try:
            assert await HttpTrigger(url=f"{server.url}/slow", request_timeout=0.2).poll() is None
        finally:
            release.set()

    assert "failed" in caplog.text
    assert "Timeout" in caplog.text


# -- what passes ----------------------------------------------------------------------------------


async def test_json_path_and_json_value() -> None:
    def job(state: str) -> Reply:
        return Reply.json({"job": {"steps": [{"state": "done"}, {"state": state}]}})

    with serve() as server:
        server.script("/job", job("running"), job("done"))
        trigger = HttpTrigger(
            url=f"{server.url}/job", json_path="job.steps.1.state", json_value="done"
        )

        assert await trigger.poll() is None
        event = await trigger.poll()

    assert event is not None
    assert event.payload["json"] == {"job": {"steps": [{"state": "done"}, {"state": "done"}]}}
    assert event.payload["text"] is None


@pytest.mark.parametrize(
    ("body", "json_path", "json_value", "passes"),
    [
        ({"ready": False}, "ready", None, False),
        ({"ready": True}, "ready", None, True),
        ({"other": True}, "ready", None, False),
        ({"n": 1}, "n", True, False),  # JSON keeps 1 and true apart, as Python does not
        ({"n": 1}, "n", 1, True),
        ({"items": ["a"]}, "items.1", None, False),
        ({"items": ["a"]}, "items.0", "a", True),
        ({"items": ["a"]}, "items.x", None, False),
    ],
)
async def test_json_conditions(body: Any, json_path: str, json_value: Any, passes: bool) -> None:
    with serve() as server:
        server.script("/", Reply.json(body))
        trigger = HttpTrigger(url=f"{server.url}/", json_path=json_path, json_value=json_value)

        assert (await trigger.poll() is not None) is passes


async def test_a_body_that_is_not_json_fails_a_json_condition_and_is_kept_as_text() -> None:
    with serve() as server:
        server.script("/", Reply.text("ready: yes"))

        assert await HttpTrigger(url=f"{server.url}/", json_path="ready").poll() is None
        event = await HttpTrigger(url=f"{server.url}/").poll()

    assert event is not None
    assert event.payload["json"] is None
    assert event.payload["text"] == "ready: yes"


async def test_a_user_check_by_import_path_decides_through_the_run() -> None:
    with serve() as server:
        server.script("/job", Reply.json({"state": "running"}), Reply.json({"state": "done"}))
        clock = FakeClock()
        trigger = HttpTrigger(url=f"{server.url}/job", check="http_checks:state_is_done")

        async with running(trigger, clock) as events:
            await asleep_after(server, clock, 1)
            clock.advance(10)
            event = await next_event(events)

        assert event.payload["json"] == {"state": "done"}


@pytest.mark.parametrize("check", ["http_checks:done_payload", "http_checks:async_state_is_done"])
async def test_a_user_check_may_be_async_or_return_the_payload(check: str) -> None:
    with serve() as server:
        server.script("/", Reply.json({"state": "running"}), Reply.json({"state": "done"}))
        trigger = HttpTrigger(url=f"{server.url}/", check=check)

        assert await trigger.poll() is None
        event = await trigger.poll()

    assert event is not None
    if check.endswith("done_payload"):
        assert event.payload == {"state": "done", "checked_by": "done_payload"}
    else:
        assert event.payload["json"] == {"state": "done"}


@pytest.mark.parametrize(
    ("check", "error", "message"),
    [
        ("no_such_module:check", TriggerLoadError, "cannot import the check"),
        ("http_checks:missing", TriggerLoadError, "is not a function in http_checks"),
        ("http_checks:NOT_A_FUNCTION", TriggerLoadError, r"not a function .*found 42"),
        ("http_checks:forgets_to_return", TriggerError, "must return True, False or a dict"),
        ("http_checks:raises", TriggerError, r"raised KeyError\('state'\)"),
    ],
)
async def test_a_broken_check_fails_the_trigger(
    check: str, error: type[Exception], message: str
) -> None:
    with serve() as server:
        server.script("/", Reply.json({"state": "done"}))
        trigger = HttpTrigger(url=f"{server.url}/", check=check)

        with pytest.raises(error, match=message):
            async with aclosing(trigger.run()) as events:
                await anext(events)


async def test_an_oversized_body_is_not_ready(caplog: pytest.LogCaptureFixture) -> None:
    with serve() as server:
        server.script("/declared", Reply(body=b"x" * 1001))
        server.script("/chunked", Reply(body=b"x" * 300_000, chunked=True))
        server.script("/fits", Reply(body=b"x" * 1000))

        for path in ("/declared", "/chunked"):
            assert await HttpTrigger(url=f"{server.url}{path}", max_body_bytes=1000).poll() is None
        event = await HttpTrigger(url=f"{server.url}/fits", max_body_bytes=1000).poll()

    assert caplog.text.count("over max_body_bytes=1000") == 2
    assert event is not None
    assert event.payload["text"] == "x" * 1000


async def test_a_long_text_body_is_truncated_in_the_payload() -> None:
    with serve() as server:
        server.script("/", Reply.text("y" * 100_000))
        event = await HttpTrigger(url=f"{server.url}/").poll()

    assert event is not None
    assert len(event.payload["text"]) == 64 * 1024


async def test_a_compressed_body_is_read_decoded() -> None:
    body = b'{"state": "done"}'
    with serve() as server:
        headers = {"Content-Type": "application/json", "Content-Encoding": "gzip"}
        server.script("/", Reply(body=gzip.compress(body), headers=headers))
        trigger = HttpTrigger(url=f"{server.url}/", check="http_checks:state_is_done")
        event = await trigger.poll()

    assert event is not None
    assert event.payload["json"] == {"state": "done"}
    assert event.dedup_key == key_of(f"{server.url}/", 200, body)


async def test_sends_method_headers_and_body() -> None:
    with serve() as server:
        server.script("/hook", Reply(status=202))
        trigger = HttpTrigger(
            url=f"{server.url}/hook",
            method="POST",
            headers={"X-Token": "t"},
            body='{"ping": 1}',
            expect_status=(201, 202),
        )
        event = await trigger.poll()

    assert event is not None
    assert event.payload["status"] == 202
    (seen,) = server.requests
    assert (seen.method, seen.body, seen.headers["X-Token"]) == ("POST", b'{"ping": 1}', "t")


async def test_redirects_are_followed_unless_told_not_to() -> None:
    with serve() as server:
        server.script("/old", Reply.redirect("/new"))
        server.script("/new", Reply.text("moved"))

        followed = await HttpTrigger(url=f"{server.url}/old").poll()
        kept = await HttpTrigger(
            url=f"{server.url}/old", follow_redirects=False, expect_status=(302,)
        ).poll()

    assert followed is not None
    assert followed.payload["text"] == "moved"
    assert kept is not None
    assert kept.payload["status"] == 302


# -- untrusted URLs -------------------------------------------------------------------------------


async def test_an_untrusted_url_to_loopback_is_refused_before_it_is_sent() -> None:
    with serve() as server:
        server.script("/", Reply())
        trigger = HttpTrigger(url=f"{server.url}/", trusted=False)

        with using(TriggerRuntime(clock=FakeClock())), pytest.raises(PolicyError, match="loopback"):
            async with aclosing(trigger.run()) as events:
                await anext(events)
        with pytest.raises(PolicyError, match="loopback"):  # poll() too, default runtime
            await trigger.poll()

        assert server.hits() == 0


@pytest.mark.parametrize("target", ["internal", "http://169.254.169.254/latest/meta-data/"])
async def test_a_redirect_from_an_allowed_host_to_a_blocked_one_is_refused(target: str) -> None:
    with serve() as allowed, serve() as internal:
        location = f"{internal.url}/secret" if target == "internal" else target
        allowed.script("/go", Reply.redirect(location))
        internal.script("/secret", Reply.text("the keys"))
        policy = InputPolicy(allowed_hosts=(f"127.0.0.1:{allowed.port}",))
        trigger = HttpTrigger(url=f"{allowed.url}/go", trusted=False)

        with (
            using(TriggerRuntime(clock=FakeClock(), policy=policy)),
            pytest.raises(PolicyError, match="is refused") as refused,
        ):
            await trigger.poll()

        assert location in str(refused.value)
        assert allowed.hits("/go") == 1
        assert internal.hits() == 0


async def test_an_allowed_host_is_polled_with_its_redirects() -> None:
    with serve() as server:
        server.script("/go", Reply.redirect("/there"))
        server.script("/there", Reply.json({"ok": True}))
        policy = InputPolicy(allowed_hosts=(f"127.0.0.1:{server.port}",))

        with using(TriggerRuntime(policy=policy)):
            event = await HttpTrigger(url=f"{server.url}/go", trusted=False).poll()

    assert event is not None
    assert event.payload["json"] == {"ok": True}


# -- the trigger as a value -----------------------------------------------------------------------


def test_round_trips_through_its_json_form() -> None:
    trigger = HttpTrigger(
        url="https://ci.example.com/jobs/42",
        method="POST",
        headers={"Accept": "application/json"},
        body="{}",
        expect_status=(200, 204),
        json_path="job.state",
        json_value={"done": [1, 2]},
        check="http_checks:state_is_done",
        poll_interval=2.5,
        max_poll_interval=60,
        backoff=3,
        jitter=0,
        request_timeout=4,
        max_body_bytes=10,
        follow_redirects=False,
        trusted=False,
    )

    classpath, kwargs = trigger.serialize()

    assert classpath == "triggers.http.HttpTrigger"
    assert load_trigger(classpath, kwargs) == trigger
    assert kwargs["expect_status"] == [200, 204]
    assert "Accept" not in trigger.describe()  # headers stay out of logs


def test_expect_status_given_as_a_list_becomes_a_tuple() -> None:
    assert HttpTrigger(url="http://x/", expect_status=[200, 201]).expect_status == (200, 201)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"url": ""}, "url must be a non-empty"),
        ({"url": "ftp://example.com/f"}, "must use http or https, not 'ftp'"),
        ({"url": "file:///etc/passwd"}, "must use http or https, not 'file'"),
        ({"url": "example.com/x"}, "must use http or https, not 'no scheme'"),
        ({"url": "http:///x"}, "names no host"),
        ({"url": "http://[::1/"}, "is not a valid URL"),
        ({"method": "get"}, "method must be one of GET"),
        ({"method": "BREW"}, "method must be one of GET"),
        ({"headers": {"X": 1}}, "headers must map header names to strings"),
        ({"body": {"a": 1}}, "body must be a string"),
        ({"expect_status": ()}, "expect_status must be HTTP statuses"),
        ({"expect_status": (200, 700)}, "expect_status must be HTTP statuses"),
        ({"expect_status": (True,)}, "expect_status must be HTTP statuses"),
        ({"json_value": "done"}, "json_value needs json_path"),
        ({"json_path": "job..state"}, "json_path must be dotted keys"),
        ({"json_path": "a", "json_value": float("nan")}, "json_value must be a JSON value"),
        ({"check": "module.function"}, "check must look like 'package.module:function'"),
        ({"check": "a b:c"}, "check must look like"),
        ({"poll_interval": 0}, "poll_interval must be a finite number above 0"),
        ({"poll_interval": float("inf")}, "poll_interval must be a finite number"),
        ({"request_timeout": -1}, "request_timeout must be a finite number above 0"),
        ({"max_poll_interval": 1}, r"max_poll_interval \(1\) must not be below poll_interval"),
        ({"backoff": 0.5}, "backoff must be a finite number at least 1"),
        ({"jitter": -0.1}, "jitter must be a finite number at least 0"),
        ({"max_body_bytes": 0}, "max_body_bytes must be a positive whole number"),
        ({"max_body_bytes": 1.5}, "max_body_bytes must be a positive whole number"),
        ({"trusted": "no"}, "trusted must be true or false"),
    ],
)
def test_bad_arguments_are_refused_with_a_clear_sentence(
    kwargs: dict[str, Any], message: str
) -> None:
    arguments = {"url": "https://example.com/", **kwargs}

    with pytest.raises(ValueError, match=message):
        HttpTrigger(**arguments)
    with pytest.raises(TriggerLoadError, match=message):
        load_trigger("triggers.http.HttpTrigger", arguments)
