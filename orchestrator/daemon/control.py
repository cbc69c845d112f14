"""The control socket: how CLI commands reach a running daemon at once.

The daemon listens on a Unix socket, `daemon.sock` in the state directory. The protocol is
newline-delimited JSON: the client sends one JSON object on one line, the daemon answers one
line, `{"ok": true, "result": {...}}` or `{"ok": false, "error": "message"}`. A connection may
carry several requests, answered in order; the client here sends one per connection.

An AF_UNIX path holds at most 107 bytes. When `<state dir>/daemon.sock` is longer, the socket
lives at `/tmp/orchestrator-<uid>/<sha1 of the state dir's real path>.sock` instead, in a folder
only this user may enter. Server and client both call `control_path`, so they always agree.

The server never dies of a bad client: invalid JSON, a line that is not an object, a client
that hangs up mid-request or sends a line over `MAX_REQUEST_BYTES` get an error reply (or a
closed connection) and the daemon goes on. Nor of running out of open files: it waits and
accepts again, saying so at most once a minute. An `OrchestratorError` from the handler is sent
back as its message; any other exception is logged with its traceback and answered with a
generic error, so internals never leak to clients.

```
OrchestratorError
└── DaemonError                 the daemon answered with an error, or did not answer
    └── DaemonUnavailableError  nothing listens on the socket: no daemon runs
StateDirError
└── ControlSocketError          the socket cannot be served (another server, unsafe folder)
```
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import stat
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any

import anyio
from anyio.abc import ByteStream, SocketListener, TaskGroup
from anyio.streams.buffered import BufferedByteReceiveStream

from orchestrator.descriptors import ACCEPT_RETRY_SECONDS, ThrottledLog, out_of_descriptors
from orchestrator.errors import OrchestratorError, StateDirError

SOCKET_FILENAME = "daemon.sock"
MAX_REQUEST_BYTES = 64 * 1024  # one request line; more is refused and the connection closed
MAX_REPLY_BYTES = 16 * 1024 * 1024  # a reply can list many runs, but not without bound
IDLE_TIMEOUT_SECONDS = 60.0  # a connection that sends nothing this long is closed
_MAX_UNIX_PATH_BYTES = 107  # sun_path is 108 bytes, the last one the terminating NUL
_FALLBACK_ROOT = Path("/tmp")  # not $TMPDIR: server and client may not share the environment

Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]

logger = logging.getLogger("orchestrator.control")
_exhaustion_log = ThrottledLog(logger)


class DaemonError(OrchestratorError):
    """The daemon refused a request (its message says why) or did not answer it."""


class DaemonUnavailableError(DaemonError):
    """Nothing listens on the control socket: no daemon runs for this state directory."""


class ControlSocketError(StateDirError):
    """The control socket cannot be served: another server has it, or its folder is unsafe."""


class _RequestTooLarge(Exception):
    """A request line over `MAX_REQUEST_BYTES`: the connection cannot be resynchronised."""


def control_path(state_dir: Path) -> Path:
    """Where the daemon of `state_dir` listens: `daemon.sock` in it, or a short fallback.

    Symlinks are resolved first, so every spelling of one state directory gives one path.
    """
    real = Path(os.path.realpath(state_dir))
    preferred = real / SOCKET_FILENAME
    if len(os.fsencode(preferred)) <= _MAX_UNIX_PATH_BYTES:
        return preferred
    digest = hashlib.sha1(os.fsencode(real), usedforsecurity=False).hexdigest()
    return _fallback_dir() / f"{digest}.sock"


def _fallback_dir() -> Path:
    return _FALLBACK_ROOT / f"orchestrator-{os.getuid()}"


# -- server -------------------------------------------------------------------------------------


@asynccontextmanager
async def serve_control(
    path: Path, handler: Handler, *, idle_timeout: float = IDLE_TIMEOUT_SECONDS
) -> AsyncIterator[None]:
    """Answer requests on the socket at `path` with `handler` until the block exits.

    The socket file is made with mode 0o600 (only this user may connect), replaces a stale
    socket file left by a dead daemon, and is removed on exit; in-flight requests are
    cancelled then.
    """
    listener = await _listen(path)
    identity: os.stat_result | None = None
    try:
        identity = os.stat(path)
        async with anyio.create_task_group() as group:
            group.start_soon(_accept_connections, listener, handler, idle_timeout, group)
            try:
                yield
            finally:
                group.cancel_scope.cancel()
    finally:
        await listener.aclose()
        if identity is not None:
            _remove_own_socket(path, identity)


async def _listen(path: Path) -> SocketListener:
    """A listener on `path`, once the folder is safe and any socket file there is stale."""
    if path.parent == _fallback_dir():
        _secure_fallback_dir(create=True)
    await _require_stale(path)
    try:
        # anyio removes the stale socket file before binding and applies `mode` just after:
        # for that instant the folder's permissions guard it (the fallback folder is 0o700).
        return await anyio.create_unix_listener(path, mode=0o600)
    except OSError as error:
        raise ControlSocketError(
            f"cannot listen on the control socket {path}: {error.strerror or error}"
        ) from error


async def _require_stale(path: Path) -> None:
    """Refuse to take over a socket someone listens on, or a file that is not a socket."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise ControlSocketError(
            f"{path} exists and is not a socket; remove it so the daemon can listen there"
        )
    try:
        stream = await anyio.connect_unix(path)
    except OSError:
        return  # nobody listens: a dead daemon's socket, safe to replace
    await stream.aclose()
    raise ControlSocketError(
        f"another process already listens on the control socket {path}; "
        "is a daemon already running on this state directory?"
    )


def _remove_own_socket(path: Path, identity: os.stat_result) -> None:
    """Remove the socket file on exit, unless another server has replaced it since."""
    try:
        current = os.lstat(path)
    except FileNotFoundError:
        return
    if (current.st_dev, current.st_ino) == (identity.st_dev, identity.st_ino):
        path.unlink(missing_ok=True)


async def _accept_connections(
    listener: SocketListener, handler: Handler, idle_timeout: float, group: TaskGroup
) -> None:
    while True:
        try:
            stream = await listener.accept()
        except anyio.BrokenResourceError as error:
            # Out of open files is back-pressure, not an end: clients wait in the backlog.
            if not out_of_descriptors(error):
                raise
            _exhaustion_log.warning(
                "the control socket is out of open files (%s): clients wait", error.__cause__
            )
            await anyio.sleep(ACCEPT_RETRY_SECONDS)
            continue
        group.start_soon(_serve_connection, stream, handler, idle_timeout)


async def _serve_connection(stream: ByteStream, handler: Handler, idle_timeout: float) -> None:
    """Answer one client's requests until it hangs up, idles, or breaks the framing."""
    async with stream:
        lines = BufferedByteReceiveStream(stream)
        try:
            while (line := await _next_line(lines, idle_timeout)) is not None:
                await _send(stream, await _answer(line, handler))
        except _RequestTooLarge:
            too_large = f"a request must be at most {MAX_REQUEST_BYTES} bytes on one line"
            await _send_quietly(stream, {"ok": False, "error": too_large})
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, ConnectionError):
            pass  # the client went away; nothing to answer
        except Exception:
            logger.exception("control connection failed")


async def _next_line(lines: BufferedByteReceiveStream, idle_timeout: float) -> bytes | None:
    """The next request line; None when the client hung up (mid-line too) or idled out."""
    with anyio.move_on_after(idle_timeout):
        try:
            line = await lines.receive_until(b"\n", MAX_REQUEST_BYTES)
        except anyio.IncompleteRead:
            return None
        except anyio.DelimiterNotFound:
            raise _RequestTooLarge from None
        # receive_until can return a longer line when it came in one chunk with its newline.
        if len(line) > MAX_REQUEST_BYTES:
            raise _RequestTooLarge
        return line
    return None


async def _answer(line: bytes, handler: Handler) -> dict[str, Any]:
    """The reply to one request line: the handler's result, or why there is none."""
    try:
        request = json.loads(line)
    except ValueError as error:  # JSONDecodeError and UnicodeDecodeError
        return {"ok": False, "error": f"a request must be one line of JSON: {error}"}
    if not isinstance(request, dict):
        kind = type(request).__name__
        return {"ok": False, "error": f"a request must be a JSON object, got {kind}"}
    return await _call_handler(handler, request)


async def _call_handler(handler: Handler, request: dict[str, Any]) -> dict[str, Any]:
    try:
        result = await handler(request)
        json.dumps(result)  # a result that cannot be sent is the handler's bug, not the client's
    except OrchestratorError as error:
        return {"ok": False, "error": str(error)}
    except Exception:
        # The keys name the request; its values may hold secrets (a run's conf), so not them.
        logger.exception("the control handler failed on a request with keys %s", sorted(request))
        return {"ok": False, "error": "internal error in the daemon; its log has the details"}
    return {"ok": True, "result": result}


async def _send(stream: ByteStream, reply: dict[str, Any]) -> None:
    await stream.send(json.dumps(reply, separators=(",", ":")).encode() + b"\n")


async def _send_quietly(stream: ByteStream, reply: dict[str, Any]) -> None:
    """Send a last word to a client that may already be gone."""
    try:
        await _send(stream, reply)
    except (anyio.BrokenResourceError, anyio.ClosedResourceError, ConnectionError):
        pass


# -- client -------------------------------------------------------------------------------------


# A `timeout` argument (not the caller's `fail_after`): a CLI command has one number to pass,
# and a timeout here becomes a DaemonError that names the daemon, not a bare TimeoutError.
async def request(
    path: Path,
    payload: dict[str, Any],
    *,
    timeout: float = 10,  # noqa: ASYNC109
) -> dict[str, Any]:
    """Send `payload` to the daemon listening at `path` and return its result.

    Raises `DaemonError` with the daemon's message when it refuses, `DaemonUnavailableError`
    when nothing listens (no daemon runs: the caller may do the work itself).
    """
    data = json.dumps(payload, separators=(",", ":")).encode()
    if len(data) > MAX_REQUEST_BYTES:
        raise DaemonError(
            f"the request is {len(data)} bytes of JSON; the daemon takes at most "
            f"{MAX_REQUEST_BYTES}"
        )
    try:
        with anyio.fail_after(timeout):
            reply = await _exchange(path, data + b"\n")
    except TimeoutError:
        raise DaemonError(f"the daemon at {path} did not answer within {timeout:g} s") from None
    return _result_of(reply, path)


def request_sync(path: Path, payload: dict[str, Any], *, timeout: float = 10) -> dict[str, Any]:
    """`request` for synchronous callers (click commands); not from inside an event loop."""
    return anyio.run(partial(request, path, payload, timeout=timeout))


async def _exchange(path: Path, data: bytes) -> bytes:
    stream = await _connect(path)
    async with stream:
        try:
            await stream.send(data)
            return await BufferedByteReceiveStream(stream).receive_until(b"\n", MAX_REPLY_BYTES)
        except (anyio.IncompleteRead, anyio.BrokenResourceError, ConnectionError):
            raise DaemonError(
                f"the daemon at {path} closed the connection without answering "
                "(is it shutting down?)"
            ) from None
        except anyio.DelimiterNotFound:
            raise DaemonError(f"the daemon's reply is over {MAX_REPLY_BYTES} bytes") from None


async def _connect(path: Path) -> ByteStream:
    if path.parent == _fallback_dir():
        _secure_fallback_dir(create=False)
    try:
        return await anyio.connect_unix(path)
    except (FileNotFoundError, ConnectionRefusedError, NotADirectoryError):
        # No socket file, or one a dead daemon left behind.
        raise DaemonUnavailableError(f"no daemon is listening on {path}") from None
    except OSError as error:
        # Not "unavailable": a daemon may well run (as another user); do not work around it.
        raise DaemonError(
            f"cannot connect to the daemon at {path}: {error.strerror or error}"
        ) from None


def _result_of(reply_line: bytes, path: Path) -> dict[str, Any]:
    try:
        reply = json.loads(reply_line)
    except ValueError:
        raise DaemonError(f"the daemon at {path} answered with invalid JSON") from None
    if not isinstance(reply, dict) or not isinstance(reply.get("ok"), bool):
        raise DaemonError(f"the daemon at {path} answered with an unexpected reply: {reply!r}")
    if not reply["ok"]:
        raise DaemonError(str(reply.get("error") or "the daemon refused the request"))
    result = reply.get("result")
    if not isinstance(result, dict):
        raise DaemonError(f"the daemon at {path} answered without a result object")
    return result


# -- the fallback folder ------------------------------------------------------------------------


def _secure_fallback_dir(*, create: bool) -> None:
    """Make sure the fallback folder is ours alone: anyone may create folders in /tmp.

    Another user who made `/tmp/orchestrator-<our uid>` first could otherwise listen in our
    daemon's place (or read our requests).
    """
    folder = _fallback_dir()
    if create:
        try:
            folder.mkdir(mode=0o700, exist_ok=True)
        except OSError as error:
            raise ControlSocketError(f"cannot create {folder}: {error.strerror or error}") from None
    try:
        info = os.lstat(folder)
    except FileNotFoundError:
        return  # the client finds no socket there: reported as no daemon
    unsafe = (
        not stat.S_ISDIR(info.st_mode)
        or info.st_uid != os.getuid()
        or info.st_mode & (stat.S_IRWXG | stat.S_IRWXO)
    )
    if unsafe:
        raise ControlSocketError(
            f"{folder} (where the control socket goes, since the state directory's path is too "
            "long for a Unix socket) is not a folder only you can use; remove it, or use a "
            "state directory with a shorter path"
        )
