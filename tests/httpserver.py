"""A real HTTP/1.1 server on 127.0.0.1 and a random port, scripted per path, for tests.

```python
with serve() as server:
    server.script("/job", Reply(status=503), Reply.json({"state": "done"}))
    ...  # GET {server.url}/job answers 503 once, then the JSON body for ever
    assert server.hits("/job") == 2
```

Each path answers its scripted replies in order and repeats the last one; a path nobody
scripted answers 404. Every request is recorded. The server stops when the `with` block ends.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

_CHUNK = 64 * 1024


@dataclass(frozen=True)
class Reply:
    """One scripted response.

    `chunked` sends the body without a Content-Length; `hold` makes the server wait until the
    test sets that event (at most 10 s) before answering, to play a server that hangs.
    """

    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    chunked: bool = False
    hold: threading.Event | None = None

    @classmethod
    def json(cls, value: Any, status: int = 200) -> Reply:
        headers = {"Content-Type": "application/json"}
        return cls(status=status, body=json.dumps(value).encode(), headers=headers)

    @classmethod
    def text(cls, text: str, status: int = 200) -> Reply:
        headers = {"Content-Type": "text/plain; charset=utf-8"}
        return cls(status=status, body=text.encode(), headers=headers)

    @classmethod
    def redirect(cls, location: str, status: int = 302) -> Reply:
        return cls(status=status, headers={"Location": location})


@dataclass(frozen=True)
class SeenRequest:
    """A request the server received."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes


class HttpServer:
    """The scripted server; build it with `serve()`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._scripts: dict[str, list[Reply]] = {}
        self._requests: list[SeenRequest] = []
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.owner = self
        self.port: int = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"

    def script(self, path: str, *replies: Reply) -> None:
        """Answer `path` with `replies` in order, then repeat the last one."""
        if not replies:
            raise ValueError("script at least one reply")
        with self._lock:
            self._scripts[path] = list(replies)

    def hits(self, path: str | None = None) -> int:
        """How many requests arrived (for `path`, or in all)."""
        with self._lock:
            return sum(1 for seen in self._requests if path is None or seen.path == path)

    @property
    def requests(self) -> list[SeenRequest]:
        with self._lock:
            return list(self._requests)

    def _answer(self, seen: SeenRequest) -> Reply:
        with self._lock:
            self._requests.append(seen)
            replies = self._scripts.get(seen.path)
            if not replies:
                return Reply.text("not scripted", status=404)
            return replies.pop(0) if len(replies) > 1 else replies[0]


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    owner: HttpServer


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as real servers do
    server: _Server

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        seen = SeenRequest(
            method=self.command,
            path=self.path,
            headers=dict(self.headers.items()),
            body=self.rfile.read(length),
        )
        reply = self.server.owner._answer(seen)
        if reply.hold is not None:
            reply.hold.wait(timeout=10)
        try:
            self._send(reply)
        except OSError:  # the client stopped reading (a body over its limit): expected
            self.close_connection = True

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _handle

    def _send(self, reply: Reply) -> None:
        self.send_response(reply.status)
        for name, value in reply.headers.items():
            self.send_header(name, value)
        if reply.chunked:
            self.send_header("Transfer-Encoding", "chunked")
        else:
            self.send_header("Content-Length", str(len(reply.body)))
        self.end_headers()
        if self.command != "HEAD":
            self._write_body(reply)

    def _write_body(self, reply: Reply) -> None:
        if not reply.chunked:
            self.wfile.write(reply.body)
            return
        for start in range(0, len(reply.body), _CHUNK):
            piece = reply.body[start : start + _CHUNK]
            self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
        self.wfile.write(b"0\r\n\r\n")

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the tests assert on `requests`, not on stderr."""


@contextmanager
def serve() -> Iterator[HttpServer]:
    """Run a scripted server in a thread for the `with` block."""
    server = HttpServer()
    thread = threading.Thread(
        target=server._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    try:
        yield server
    finally:
        server._server.shutdown()
        server._server.server_close()
        thread.join()
