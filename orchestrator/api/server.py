"""The API served by uvicorn inside the daemon's own event loop.

uvicorn's `Server.serve()` is made for owning a process: it installs its own SIGINT and
SIGTERM handlers (the daemon has its own, which drain runs first) and wakes every 100 ms to
refresh its Date header and look for a stop flag. We use its two halves instead: `startup`
on a socket we bound ourselves (so a busy port is our clear error, and port 0 gives a free
one we can report), and `shutdown` when the daemon's task group cancels us. Between them the
server costs nothing: no timer, no polling. Connections are accepted by our own loop
(`connections.accept_connections`), not asyncio's server, for the limits `connections.py`
explains: a cap, deadlines on slow requests, and running out of open files survived.
"""

from __future__ import annotations

import errno
import logging
import socket
from functools import partial
from typing import TYPE_CHECKING

import anyio
import uvicorn
from anyio.abc import TaskStatus

from orchestrator.api.connections import (
    ConnectionLimits,
    GuardedHttpProtocol,
    HeaderLimits,
    accept_connections,
)
from orchestrator.errors import ConfigError

if TYPE_CHECKING:
    from starlette.types import ASGIApp

    from orchestrator.config import Settings

logger = logging.getLogger("orchestrator.api")

#: Seconds open connections get to finish their answers when the daemon stops.
_GRACE = 5


async def serve_api(
    app: ASGIApp,
    settings: Settings,
    *,
    task_status: TaskStatus[str] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Serve `app` on `api_host:api_port` until cancelled; `task_status.started` gets the URL."""
    limits = ConnectionLimits.from_settings(settings)
    listener = bind(settings.api_host, settings.api_port)
    server = uvicorn.Server(_config(HeaderLimits(app, limits)))
    server.config.load()
    server.lifespan = server.config.lifespan_class(server.config)
    server.servers = []  # no asyncio server to close on shutdown: we accept connections
    protocol = partial(
        GuardedHttpProtocol,
        config=server.config,
        server_state=server.server_state,
        app_state=server.lifespan.state,
        limits=limits,
    )
    try:
        async with anyio.create_task_group() as group:
            await group.start(accept_connections, listener, protocol, server.server_state, limits)
            url = _url(listener)
            logger.info("API on %s (OpenAPI document at %s/api/v1/openapi.json)", url, url)
            task_status.started(url)
            await anyio.sleep_forever()
    finally:
        with anyio.CancelScope(shield=True):
            server.should_exit = True
            await server.shutdown(sockets=[listener])  # closes the listener too


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on `host:port`; a port in use is a `ConfigError` saying what to do."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP named, not 0: asyncio sets TCP_NODELAY on accepted sockets only when the
    # listener says TCP, and without it Nagle holds each answer's second write for the
    # client's delayed ACK (40 ms per request on a kept-alive connection).
    listener = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind((host, port))
        listener.listen(2048)
    except OSError as error:
        listener.close()
        raise ConfigError(_bind_message(host, port, error)) from None
    listener.setblocking(False)
    return listener


def _config(app: ASGIApp) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        lifespan="off",
        log_config=None,  # the daemon configured logging; uvicorn must not replace it
        access_log=False,
        server_header=False,
        date_header=False,  # refreshed by the 100 ms loop we do not run
        timeout_graceful_shutdown=_GRACE,
        timeout_keep_alive=30,
    )


def _url(listener: socket.socket) -> str:
    host, port = listener.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _bind_message(host: str, port: int, error: OSError) -> str:
    if error.errno == errno.EADDRINUSE:
        cause = "the address is in use (another daemon, or another program, listens there)"
    elif error.errno == errno.EADDRNOTAVAIL:
        cause = "this machine has no such address"
    else:
        cause = error.strerror or str(error)
    return (
        f"the API cannot listen on {host}:{port}: {cause}. Set `api_port` "
        "(ORCHESTRATOR_API_PORT, 0 for any free port) or `api_host`, or turn the API off "
        "with `api_enabled = false`"
    )
