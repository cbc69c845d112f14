"""Connection limits: how many at once, how long a request's head and body may take, how big.

uvicorn's own knobs do not cover a hostile client. Its `limit_concurrency` answers 503 only
once a request's head is complete, and still accepts every connection, so idle clients each
hold an open file; its keep-alive timeout starts after the first answer, so a client that
connects and sends nothing, or sends a head one byte at a time (slowloris), is never timed
out; httptools buffers a head of any size; and asyncio's accept loop, on running out of
files, logs a traceback per attempt (up to the whole backlog per wake-up). Hence three
small pieces, on top of uvicorn's httptools protocol and its graceful shutdown:

- `accept_connections`, our accept loop: beyond `max_connections` a connection gets a 503
  and is closed at once (it costs an open file for a moment, not for as long as the client
  likes); out of files, it waits and tries again, with one log line a minute at most.
- `GuardedHttpProtocol`: a request's head must be whole within `header_timeout` seconds of
  its first byte (or of the connection opening) and at most `max_header_bytes` long; its
  body must be whole within `body_timeout` seconds of its head. Late ones get a 408, a
  head too large a 431, and the connection is closed.
- `HeaderLimits`: an ASGI wrapper answering 431 to a whole head with more than
  `max_headers` headers or over `max_header_bytes` (the protocol sees only how much it read
  before the head ended, and one read can hold a whole large head); checking after parsing
  is cheap, since the protocol has bounded what parsing may cost, and needs no hook inside
  the parser.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from dataclasses import dataclass
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

import anyio
from anyio.abc import TaskStatus
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from orchestrator.api.problems import problem
from orchestrator.descriptors import (
    ACCEPT_RETRY_SECONDS,
    ThrottledLog,
    open_file_limit,
    out_of_descriptors,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from starlette.types import ASGIApp, Receive, Scope, Send
    from uvicorn.server import ServerState

    from orchestrator.config import Settings

logger = logging.getLogger("orchestrator.api")


@dataclass(frozen=True, kw_only=True)
class ConnectionLimits:
    """What one client may hold of the API: see the module's docstring."""

    max_connections: int = 1000
    header_timeout: float = 10.0
    body_timeout: float = 30.0
    max_header_bytes: int = 16384
    max_headers: int = 100

    @classmethod
    def from_settings(cls, settings: Settings) -> ConnectionLimits:
        """The settings' limits, with the connection cap kept under half the open-file limit.

        The other half is for everything else the daemon opens (the database, task logs,
        worker pipes, watched folders, the control socket), so a full API leaves room for
        them: the cap, not `EMFILE`, is what a flood of clients runs into.
        """
        budget = max(1, open_file_limit() // 2)
        if settings.api_max_connections > budget:
            logger.warning(
                "api_max_connections lowered from %d to %d: the open-file limit is %d "
                "(raise it, e.g. with LimitNOFILE= in the systemd unit)",
                settings.api_max_connections,
                budget,
                open_file_limit(),
            )
        return cls(
            max_connections=min(settings.api_max_connections, budget),
            header_timeout=settings.api_header_timeout,
            body_timeout=settings.api_body_timeout,
            max_header_bytes=settings.api_max_header_bytes,
            max_headers=settings.api_max_headers,
        )


def raw_problem(status: int, code: str, message: str) -> bytes:
    """A whole HTTP/1.1 answer in the API's error shape, for the protocol to write itself."""
    body = bytes(problem(status, code, message).body)
    head = (
        f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\n"
        "content-type: application/json\r\n"
        f"content-length: {len(body)}\r\n"
        "connection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


# -- accepting ----------------------------------------------------------------------------------

_exhaustion_log = ThrottledLog(logger)
_refusal_log = ThrottledLog(logger)


async def accept_connections(
    listener: socket.socket,
    make_protocol: Callable[[], asyncio.Protocol],
    state: ServerState,
    limits: ConnectionLimits,
    *,
    task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Accept connections on `listener` until cancelled, never more than the cap at once."""
    loop = asyncio.get_running_loop()
    task_status.started()
    while True:
        try:
            client, _ = await loop.sock_accept(listener)
        except ConnectionAbortedError:
            continue  # the client gave up while it waited in the backlog
        except OSError as error:
            if not out_of_descriptors(error):
                raise
            _exhaustion_log.warning(
                "the API is out of open files (%s): new connections wait in the backlog", error
            )
            await anyio.sleep(ACCEPT_RETRY_SECONDS)
            continue
        if len(state.connections) >= limits.max_connections:
            _refuse(client, limits.max_connections)
            continue
        try:
            await loop.connect_accepted_socket(make_protocol, client)
        except OSError:  # the client left before its transport was made: nothing to serve
            client.close()


def _refuse(client: socket.socket, cap: int) -> None:
    _refusal_log.warning(
        "refused API connections beyond api_max_connections (%d held open at once)", cap
    )
    message = (
        f"the API holds {cap} connections, the most it accepts at once; "
        "try again in a moment, and close idle connections"
    )
    try:
        client.send(raw_problem(503, "too_many_connections", message))
    except OSError:
        pass  # the client is gone already: nothing to tell
    client.close()


# -- one connection -----------------------------------------------------------------------------


class GuardedHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with deadlines on a request's head and body, and a size
    limit on its head (uvicorn's parser callbacks mark where a head ends)."""

    def __init__(self, *args: Any, limits: ConnectionLimits, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._limits = limits
        self._deadline: asyncio.TimerHandle | None = None
        self._reading_head = True  # until a head is complete, and again once its body is
        self._head_bytes = 0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._set_deadline(self._limits.header_timeout, self._head_timed_out)

    def connection_lost(self, exc: Exception | None) -> None:
        self._clear_deadline()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._reading_head:
            self._head_bytes += len(data)
        super().data_received(data)
        if self._reading_head and self._head_bytes > self._limits.max_header_bytes:
            message = _too_large_message(self._limits.max_header_bytes)
            self._answer_and_close(431, "headers_too_large", message)
        elif self._deadline is None and not self.transport.is_closing():
            # Set once the read is parsed, in the same moment: a request that came whole in
            # one read (most do) needs neither deadline, so sets and cancels none.
            if not self._reading_head:  # a head complete, its body still to come
                self._set_deadline(self._limits.body_timeout, self._body_timed_out)
            elif self._head_bytes:  # a kept-alive connection's next head began
                self._set_deadline(self._limits.header_timeout, self._head_timed_out)

    def on_headers_complete(self) -> None:
        self._reading_head, self._head_bytes = False, 0
        self._clear_deadline()  # the head's: the body's is set if the read did not hold it
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._clear_deadline()
        self._reading_head = True
        super().on_message_complete()

    def _head_timed_out(self) -> None:
        self._deadline = None
        if self._head_bytes == 0:
            self.transport.close()  # an idle connection: nobody is waiting for an answer
            return
        seconds = self._limits.header_timeout
        message = f"the request's head did not arrive whole within {seconds:g} s"
        self._answer_and_close(408, "request_timeout", message)

    def _body_timed_out(self) -> None:
        self._deadline = None
        if self.cycle is not None and self.cycle.response_started:
            self.transport.close()
            return
        seconds = self._limits.body_timeout
        message = f"the request's body did not arrive whole within {seconds:g} s"
        # The handler still waiting for the body sees the client disconnect, and its answer
        # goes nowhere: this one is written first and the connection closed.
        self._answer_and_close(408, "request_timeout", message)

    def _answer_and_close(self, status: int, code: str, message: str) -> None:
        self._clear_deadline()
        if not self.transport.is_closing():
            self.transport.write(raw_problem(status, code, message))
            self.transport.close()

    def _set_deadline(self, seconds: float, callback: Callable[[], None]) -> None:
        self._clear_deadline()
        self._deadline = self.loop.call_later(seconds, callback)

    def _clear_deadline(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None


# -- whole heads -------------------------------------------------------------------------------


class HeaderLimits:
    """Answer 431 to a complete head with more than `max_headers` headers or over
    `max_header_bytes` (a head that arrived in one read is only measured here); pass the
    others on."""

    def __init__(self, app: ASGIApp, limits: ConnectionLimits) -> None:
        self.app = app
        self.limits = limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        problem_text = _head_problem(scope, self.limits) if scope["type"] == "http" else None
        if problem_text is None:
            await self.app(scope, receive, send)
            return
        code, message = problem_text
        await problem(431, code, message)(scope, receive, send)


def _head_problem(scope: Scope, limits: ConnectionLimits) -> tuple[str, str] | None:
    headers = scope["headers"]
    if len(headers) > limits.max_headers:
        count = len(headers)
        return "too_many_headers", f"the request has {count} headers; at most {limits.max_headers}"
    # The request line's target and every "name: value\r\n": the head, give or take its method.
    size = len(scope.get("raw_path", b"")) + len(scope.get("query_string", b""))
    size += sum(len(name) + len(value) + 4 for name, value in headers)
    if size > limits.max_header_bytes:
        return "headers_too_large", _too_large_message(limits.max_header_bytes)
    return None


def _too_large_message(limit: int) -> str:
    return f"the request's head (line and headers) is over {limit} bytes"
