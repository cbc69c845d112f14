"""A real web UI server (the API and the pages) on a free loopback port, over a real engine.

```python
async with ui_serving(settings, dag) as served:
    page = await served.client.get("/runs/R")     # signed in (admin) by a one-time link
    await served.client.post("/runs/R/cancel", data={"csrf": served.csrf})
```

What apikit.serving does, with `build_app` instead of `create_app`: the client is signed in by
redeeming a one-time login code, and keeps the session cookie; `served.csrf` is the token the
pages' forms carry, read from the page's `<meta name="csrf-token">` as a browser would.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import anyio
import httpx

from helpers import bag_of
from orchestrator import DAG
from orchestrator.api.context import ApiContext
from orchestrator.api.registry import ApiRegistry
from orchestrator.api.server import serve_api
from orchestrator.clock import Clock
from orchestrator.config import Settings
from orchestrator.scheduling.engine import Engine
from orchestrator.ui.app import build_app
from orchestrator.ui.context import UiContext

_CSRF_META = re.compile(r'<meta name="csrf-token" content="([^"]+)">')


@dataclass(eq=False)
class UiServed:
    engine: Engine
    ui: UiContext
    client: httpx.AsyncClient
    url: str
    csrf: str = ""


@asynccontextmanager
async def ui_serving(
    settings: Settings, *dags: DAG, clock: Clock | None = None
) -> AsyncIterator[UiServed]:
    async with Engine.open(settings, dagbag=bag_of(*dags), clock=clock) as engine:
        registry = await ApiRegistry.load(engine.store, environ={})
        app, ui = build_app(ApiContext(engine, registry))
        try:
            async with anyio.create_task_group() as tg:
                url = await tg.start(serve_api, app, settings)
                async with httpx.AsyncClient(base_url=url, timeout=30) as client:
                    served = UiServed(engine, ui, client, url)
                    served.csrf = await sign_in(served)
                    yield served
                tg.cancel_scope.cancel()
        finally:
            ui.close()


async def sign_in(served: UiServed) -> str:
    """Sign the client in with a one-time link (admin scope); the page's CSRF token."""
    code = served.ui.sessions.issue_link_code()
    answer = await served.client.get(f"/login/once/{code}")
    assert answer.status_code == 303, answer.text
    # Any page shows the token to a signed-in client; a 404 page needs nothing in the store.
    page = await served.client.get("/runs/no-such-run")
    found = _CSRF_META.search(page.text)
    assert found is not None, "the signed-in page carries no CSRF token"
    return found.group(1)


@dataclass(frozen=True)
class Event:
    kind: str
    id: str
    data: str


async def events_of(response: httpx.Response) -> AsyncIterator[Event]:
    """The server-sent events of a streamed answer, as they come (comments skipped)."""
    fields: dict[str, list[str]] = {}
    async for line in response.aiter_lines():
        if not line:
            if fields:
                data = "\n".join(fields.get("data", []))
                yield Event(_last(fields, "event") or "message", _last(fields, "id"), data)
            fields = {}
        elif not line.startswith(":"):
            name, _, value = line.partition(":")
            fields.setdefault(name, []).append(value.removeprefix(" "))


def _last(fields: dict[str, list[str]], name: str) -> str:
    values = fields.get(name)
    return values[-1] if values else ""
