"""Connection limits on a real server: slow heads and bodies timed out, big heads refused, a cap.

Raw sockets on loopback, because an HTTP client will not send half a request. Timeouts are
set small so the server's deadline passes quickly; the test waits for the server's answer
(or its closing the connection) under a generous deadline, never for a fixed time.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import anyio
from anyio.abc import SocketStream
from apikit import Served, serving

from orchestrator import DAG, task
from orchestrator.config import Settings

DEADLINE = 15.0


def pipeline() -> DAG:
    with DAG("pipeline") as dag:

        @task
        def extract() -> int:
            return 3

        extract()
    return dag


async def connect(served: Served) -> SocketStream:
    host, port = served.url.removeprefix("http://").rsplit(":", 1)
    return await anyio.connect_tcp(host, int(port))


async def read_until_closed(stream: SocketStream) -> bytes:
    """Everything the server sends until it closes the connection."""
    received = b""
    with anyio.fail_after(DEADLINE):
        while True:
            try:
                received += await stream.receive()
            except (anyio.EndOfStream, anyio.BrokenResourceError):
                return received


def answer_of(raw: bytes) -> tuple[int, dict[str, Any]]:
    head, _, body = raw.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, json.loads(body)


async def test_a_request_head_sent_too_slowly_gets_a_408_and_is_closed(
    make_settings: Callable[..., Settings],
) -> None:
    async with serving(make_settings(api_header_timeout=0.2), pipeline()) as served:
        stream = await connect(served)
        async with stream:
            await stream.send(b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            raw = await read_until_closed(stream)
        health = await served.client.get("/api/v1/health")  # the server itself is fine
    status, body = answer_of(raw)
    assert status == 408 and body["error"]["code"] == "request_timeout"
    assert "0.2 s" in body["error"]["message"]
    assert health.status_code == 200


async def test_a_connection_that_sends_nothing_is_closed_without_an_answer(
    make_settings: Callable[..., Settings],
) -> None:
    async with serving(make_settings(api_header_timeout=0.2), pipeline()) as served:
        stream = await connect(served)
        async with stream:
            assert await read_until_closed(stream) == b""


async def test_a_body_sent_too_slowly_gets_a_408_and_is_closed(
    make_settings: Callable[..., Settings],
) -> None:
    async with serving(make_settings(api_body_timeout=0.2), pipeline()) as served:
        stream = await connect(served)
        async with stream:
            head = (
                "POST /api/v1/dags/pipeline/runs HTTP/1.1\r\nHost: x\r\n"
                f"Authorization: Bearer {served.tokens['trigger']}\r\n"
                "Content-Type: application/json\r\nContent-Length: 100\r\n\r\n"
            )
            await stream.send(head.encode() + b'{"conf": ')
            raw = await read_until_closed(stream)
        runs = await served.engine.store.list_runs(limit=10)
    status, body = answer_of(raw)
    assert status == 408 and body["error"]["code"] == "request_timeout"
    assert runs == []


async def test_a_kept_alive_connection_times_out_a_slow_second_request_too(
    make_settings: Callable[..., Settings],
) -> None:
    async with serving(make_settings(api_header_timeout=0.2), pipeline()) as served:
        stream = await connect(served)
        async with stream:
            await stream.send(b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\n\r\n")
            with anyio.fail_after(DEADLINE):
                first = await stream.receive()
            await stream.send(b"GET /api/v1/health HTTP/1.1\r\nHo")
            raw = await read_until_closed(stream)
    assert first.startswith(b"HTTP/1.1 200 ")
    assert answer_of(raw)[0] == 408


async def test_a_kept_alive_connection_times_out_a_slow_second_body_and_not_a_prompt_one(
    make_settings: Callable[..., Settings],
) -> None:
    """Deadlines are set once a read is parsed: a request that came whole sets none, one
    whose head came before its body waits for the rest, and a late body still gets a 408."""
    settings = make_settings(api_body_timeout=0.3, api_header_timeout=0.3)
    async with serving(settings, pipeline()) as served:
        stream = await connect(served)
        head = (
            "POST /api/v1/dags/pipeline/runs HTTP/1.1\r\nHost: x\r\n"
            f"Authorization: Bearer {served.tokens['trigger']}\r\n"
            "Content-Type: application/json\r\nContent-Length: 2\r\n\r\n"
        ).encode()
        async with stream:
            answers = []
            for first, then in ((head + b"{}", b""), (head, b"{}")):  # whole; head, then body
                await stream.send(first)
                if then:
                    await anyio.sleep(0.05)
                    await stream.send(then)
                with anyio.fail_after(DEADLINE):
                    answers.append(await stream.receive())
            await anyio.sleep(0.5)  # past both timeouts: no deadline was left behind
            await stream.send(head + b"{")
            raw = await read_until_closed(stream)
        runs = await served.engine.store.list_runs(limit=10)
    assert [answer.split(b" ", 2)[1] for answer in answers] == [b"201", b"201"]
    status, body = answer_of(raw)
    assert status == 408 and body["error"]["code"] == "request_timeout"
    assert len(runs) == 2


async def test_a_head_over_the_size_limit_sent_in_pieces_gets_a_431(
    make_settings: Callable[..., Settings],
) -> None:
    async with serving(make_settings(api_max_header_bytes=4096), pipeline()) as served:
        stream = await connect(served)
        async with stream:
            await stream.send(b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\nX-Big: ")
            # A header that goes on and on: the server must not wait for its end. Sent in
            # pieces, and no more than passes the limit (a send after the server closed would
            # reset the connection, and its answer with it).
            for _ in range(5):
                await stream.send(b"a" * 1000)
            raw = await read_until_closed(stream)
    status, body = answer_of(raw)
    assert status == 431 and body["error"]["code"] == "headers_too_large"
    assert "4096 bytes" in body["error"]["message"]


async def test_a_whole_head_over_the_size_limit_gets_a_431(
    make_settings: Callable[..., Settings],
) -> None:
    async with serving(make_settings(api_max_header_bytes=4096), pipeline()) as served:
        answer = await served.client.get("/api/v1/health", headers={"X-Big": "a" * 5000})
        fine = await served.client.get("/api/v1/health", headers={"X-Small": "a" * 3000})
    assert answer.status_code == 431
    assert answer.json()["error"]["code"] == "headers_too_large"
    assert fine.status_code == 200


async def test_more_headers_than_the_limit_get_a_431_that_names_the_limit(
    make_settings: Callable[..., Settings],
) -> None:
    async with serving(make_settings(api_max_headers=20), pipeline()) as served:
        many = [(f"X-H{number}", "1") for number in range(30)]
        answer = await served.client.get("/api/v1/health", headers=many)
        fine = await served.client.get("/api/v1/health", headers=many[:10])
    assert answer.status_code == 431
    error = answer.json()["error"]
    assert error["code"] == "too_many_headers" and "at most 20" in error["message"]
    assert fine.status_code == 200


async def test_connections_beyond_the_cap_get_a_503_and_are_closed_at_once(
    make_settings: Callable[..., Settings],
) -> None:
    async with serving(make_settings(api_max_connections=3), pipeline()) as served:
        held = [await connect(served) for _ in range(3)]
        try:
            for stream in held:  # answered, so accepted and counted; then kept alive
                await stream.send(b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\n\r\n")
                with anyio.fail_after(DEADLINE):
                    assert (await stream.receive()).startswith(b"HTTP/1.1 200 ")
            async with await connect(served) as extra:
                raw = await read_until_closed(extra)
        finally:
            for stream in held:
                await stream.aclose()
        with anyio.fail_after(DEADLINE):  # the server sees the held ones close, then answers
            while (await served.client.get("/api/v1/health")).status_code != 200:
                pass
    status, body = answer_of(raw)
    assert status == 503 and body["error"]["code"] == "too_many_connections"
    assert "3 connections" in body["error"]["message"]
