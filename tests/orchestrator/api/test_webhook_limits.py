"""The limits a delivery or a trigger meets on the real server: size, JSON, rate, queue, input.

Time moves on a `FakeClock`, so a rate limit is spent and refilled without sleeping; a run
that must stay running waits on an `anyio.Event` the test sets.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
import httpx
import pytest
from anyio.streams.buffered import BufferedByteReceiveStream
from apikit import Served, hello_dag, serving

from orchestrator import DAG, task
from orchestrator.api.signatures import sign_github
from orchestrator.clock import FakeClock
from orchestrator.config import Settings

SettingsFactory = Callable[..., Settings]
SECRET = "limits-secret"


def held_dag(started: anyio.Event, release: anyio.Event) -> DAG:
    """One run at a time, whose task runs until the test sets `release`."""
    with DAG("held", max_active_runs=1) as dag:

        @task(in_process=True)
        async def hold() -> None:
            started.set()
            await release.wait()

        hold()
    return dag


def signed(body: bytes, delivery: str) -> dict[str, str]:
    return {
        "X-Hub-Signature-256": sign_github(SECRET.encode(), body),
        "X-GitHub-Delivery": delivery,
        "X-GitHub-Event": "push",
    }


async def deliver(served: Served, body: bytes, delivery: str = "d-1") -> httpx.Response:
    return await served.client.post("/hooks/deploy", content=body, headers=signed(body, delivery))


async def trigger(
    served: Served, dag_id: str, body: Any = None, headers: dict[str, str] | None = None
) -> httpx.Response:
    headers = {**served.auth("trigger"), **(headers or {})}
    return await served.client.post(f"/api/v1/dags/{dag_id}/runs", json=body, headers=headers)


def error_of(answer: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert answer.status_code == status, answer.text
    error: dict[str, Any] = answer.json()["error"]
    assert (error["status"], error["code"]) == (status, code), error
    return error


async def run_count(served: Served) -> int:
    return len(await served.engine.store.list_runs(limit=1000))


# -- body size and JSON ---------------------------------------------------------------------------


async def test_a_body_over_the_limit_is_refused_from_its_content_length(
    make_settings: SettingsFactory,
) -> None:
    body = json.dumps({"blob": "x" * 2000}).encode()
    async with serving(make_settings(api_max_body=1024), hello_dag()) as served:
        await served.add_webhook("deploy", "hello", SECRET)
        error = error_of(await deliver(served, body), 413, "body_too_large")
        assert "larger than 1024 bytes" in error["message"]
        assert await run_count(served) == 0


async def test_a_chunked_body_over_the_limit_is_refused_as_it_arrives(
    make_settings: SettingsFactory,
) -> None:
    sent = 0

    async def chunks() -> AsyncIterator[bytes]:
        nonlocal sent
        for _ in range(64):
            sent += 1
            yield b"x" * 1024

    async with serving(make_settings(api_max_body=1024), hello_dag()) as served:
        await served.add_webhook("deploy", "hello", SECRET)
        answer = await served.client.post(
            "/hooks/deploy", content=chunks(), headers=signed(b"", "d-1")
        )
        assert "content-length" not in answer.request.headers  # really sent chunked
        assert sent == 64
        error_of(answer, 413, "body_too_large")
        assert await run_count(served) == 0


async def test_the_413_comes_while_the_chunked_body_is_still_being_sent(
    make_settings: SettingsFactory,
) -> None:
    """A raw connection sends 2 KiB of a body it never ends: the answer cannot wait for it."""
    async with serving(make_settings(api_max_body=1024), hello_dag()) as served:
        await served.add_webhook("deploy", "hello", SECRET)
        host, port = served.url.removeprefix("http://").split(":")
        with anyio.fail_after(10):  # a server that waited for the body's end would hang here
            async with await anyio.connect_tcp(host, int(port)) as stream:
                await stream.send(unfinished_chunked_request(signed(b"", "d-1")))
                status, body = await read_answer(BufferedByteReceiveStream(stream))
        assert status == 413
        assert json.loads(body)["error"]["code"] == "body_too_large"
        assert await run_count(served) == 0


def unfinished_chunked_request(headers: dict[str, str]) -> bytes:
    lines = ["POST /hooks/deploy HTTP/1.1", "Host: 127.0.0.1", "Transfer-Encoding: chunked"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    head = "\r\n".join(lines).encode() + b"\r\n\r\n"
    return head + b"800\r\n" + b"x" * 2048 + b"\r\n"  # no closing 0-size chunk: not done


async def read_answer(stream: BufferedByteReceiveStream) -> tuple[int, bytes]:
    """The status and body of an HTTP/1.1 answer with a Content-Length."""
    head = (await stream.receive_until(b"\r\n\r\n", 65536)).decode()
    status_line, *header_lines = head.split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in header_lines)
    body = await stream.receive_exactly(int(headers["content-length"]))
    return int(status_line.split()[1]), body


@pytest.mark.parametrize(
    ("body", "code", "said"),
    [
        (b"{not json", "invalid_json", "not valid JSON"),
        (b'{"a": NaN}', "invalid_json", "NaN"),
        (b"\xff\xfe{}", "invalid_json", "not valid UTF-8"),
        (b"[" * 9 + b"]" * 9, "json_too_deep", "more than 8 levels"),
        (b'{"a":' * 9 + b"1" + b"}" * 9, "json_too_deep", "more than 8 levels"),
    ],
)
async def test_a_signed_body_that_is_not_usable_json_is_refused_with_its_reason(
    make_settings: SettingsFactory, body: bytes, code: str, said: str
) -> None:
    async with serving(make_settings(api_max_json_depth=8), hello_dag()) as served:
        await served.add_webhook("deploy", "hello", SECRET)
        unsigned = await served.client.post("/hooks/deploy", content=body)
        error_of(unsigned, 401, "bad_signature")  # the signature comes before any parsing
        error = error_of(await deliver(served, body), 400, code)
        assert said in error["message"]
        assert await run_count(served) == 0
        fine = await deliver(served, b"[" * 8 + b"]" * 8, "d-2")  # exactly at the limit
        assert fine.status_code == 201, fine.text


# -- rates ----------------------------------------------------------------------------------------


def assert_rate_limited(answer: httpx.Response, said: str) -> float:
    """The refusal's wait, once checked to be a 429 with Retry-After and retry_after."""
    error = error_of(answer, 429, "rate_limited")
    assert said in error["message"]
    assert 0 < error["retry_after"] <= int(answer.headers["Retry-After"])
    wait: float = error["retry_after"]
    return wait


async def test_a_webhooks_own_rate_refuses_the_third_delivery_until_time_passes(
    make_settings: SettingsFactory,
) -> None:
    clock = FakeClock()
    settings = make_settings(webhook_replay_window=0)  # the same body each time, not a replay
    async with serving(settings, hello_dag(), clock=clock) as served:
        await served.add_webhook("deploy", "hello", SECRET, rate=2)
        for _ in range(5):  # unsigned requests do not spend the sender's budget
            unsigned = await served.client.post("/hooks/deploy", content=b"{}")
            error_of(unsigned, 401, "bad_signature")
        first, second, third = [await deliver(served, b"{}", f"d-{n}") for n in range(3)]
        assert (first.status_code, second.status_code) == (201, 201)
        assert assert_rate_limited(third, "webhook deploy") == pytest.approx(0.5)
        assert third.headers["Retry-After"] == "1"
        assert await run_count(served) == 2
        clock.advance(1)
        again = await deliver(served, b"{}", "d-2")
        assert again.status_code == 201, again.text
        assert await run_count(served) == 3


async def test_a_dags_trigger_rate_is_shared_by_the_api_and_its_webhooks(
    make_settings: SettingsFactory,
) -> None:
    clock = FakeClock()
    async with serving(make_settings(dag_trigger_rate=2), hello_dag(), clock=clock) as served:
        await served.add_webhook("deploy", "hello", SECRET)
        assert [(await trigger(served, "hello")).status_code for _ in range(2)] == [201, 201]
        assert_rate_limited(await trigger(served, "hello"), "starting runs of 'hello'")
        assert_rate_limited(await deliver(served, b"{}"), "starting runs of 'hello'")
        assert await run_count(served) == 2
        clock.advance(1)
        assert (await deliver(served, b"{}")).status_code == 201
        assert (await trigger(served, "hello")).status_code == 201
        assert_rate_limited(await trigger(served, "hello"), "starting runs of 'hello'")
        assert await run_count(served) == 4


# -- the queue ------------------------------------------------------------------------------------


async def test_a_full_queue_refuses_triggers_naming_max_queued_runs_until_runs_start(
    make_settings: SettingsFactory,
) -> None:
    started, release = anyio.Event(), anyio.Event()
    async with serving(make_settings(max_queued_runs=3), held_dag(started, release)) as served:
        await served.add_webhook("deploy", "held", SECRET)
        with anyio.fail_after(10):
            first = await trigger(served, "held")
            await started.wait()  # the first run holds the only place; the rest queue
        queued = [await trigger(served, "held") for _ in range(3)]
        assert [answer.status_code for answer in [first, *queued]] == [201] * 4
        for refused in (await trigger(served, "held"), await deliver(served, b"{}")):
            assert_rate_limited(refused, "`max_queued_runs` allows (3)")
        assert await run_count(served) == 4
        release.set()
        with anyio.fail_after(10):
            for answer in [first, *queued]:
                await served.engine.wait(answer.json()["run"]["run_id"])
        assert (await trigger(served, "held")).status_code == 201
        assert (await deliver(served, b"{}", "d-2")).status_code == 201


# -- what a trigger may carry ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "said"),
    [
        ({"conf": [1, 2]}, "`conf` must be a JSON object, got an array"),
        ({"conf": "x=1"}, "`conf` must be a JSON object, got a string"),
        ([{"conf": {}}], "the body must be a JSON object, got an array"),
        (42, "the body must be a JSON object, got a number"),
    ],
)
async def test_a_trigger_whose_body_or_conf_is_not_an_object_is_refused(
    make_settings: SettingsFactory, body: Any, said: str
) -> None:
    async with serving(make_settings(), hello_dag()) as served:
        error = error_of(await trigger(served, "hello", body), 400, "not_an_object")
        assert error["message"] == said
        assert await run_count(served) == 0


async def test_a_trigger_of_an_unknown_dag_is_a_404_that_lists_the_dags(
    make_settings: SettingsFactory,
) -> None:
    async with serving(make_settings(), hello_dag()) as served:
        error = error_of(await trigger(served, "helo", {"conf": {}}), 404, "dag_not_found")
        assert "helo" in error["message"] and "hello" in error["message"]
        assert await run_count(served) == 0


async def test_a_reused_idempotency_key_answers_with_the_first_run(
    make_settings: SettingsFactory,
) -> None:
    async with serving(make_settings(), hello_dag()) as served:
        first = await trigger(served, "hello", {"conf": {"n": 1}, "idempotency_key": "k-1"})
        again = await trigger(served, "hello", {"conf": {"n": 2}, "idempotency_key": "k-1"})
        by_header = await trigger(served, "hello", {}, headers={"Idempotency-Key": "k-1"})
        other = await trigger(served, "hello", {"idempotency_key": "k-2"})
        assert (first.status_code, first.json()["created"]) == (201, True)
        for answer in (again, by_header):
            assert (answer.status_code, answer.json()["created"]) == (200, False)
            assert answer.json()["run"]["run_id"] == first.json()["run"]["run_id"]
            assert answer.json()["run"]["conf"] == {"n": 1}  # the first run, as it was
        assert other.status_code == 201
        assert await run_count(served) == 2
