"""The web UI on a real engine and a real server on a free loopback port, for httpx.

```python
async with ui_serving(settings, dag) as served:
    page = await served.browser.get("/runs/R")          # signed in (admin), ready to use
    await served.browser.post("/runs/R/cancel", data={"csrf": served.csrf})
    reader = await served.signed_in("read")              # another session, of another scope
```

`served.signed_in(scope)` signs in the way a person does: `admin` through a one-time link
(`orchestrator open`), other scopes with a token of that scope at `/login`. `events_of` reads
a streamed answer's server-sent events as they come.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field

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

SCOPES = ("read", "trigger", "admin")
_CSRF = re.compile(r'<meta name="csrf-token" content="([^"]+)">')


def csrf_of(html: str) -> str:
    """The CSRF token a page carries for its forms."""
    found = _CSRF.search(html)
    assert found is not None, "the page has no CSRF token (not signed in?)"
    return found.group(1)


@dataclass(eq=False)
class UiServed:
    engine: Engine
    api: ApiContext
    ui: UiContext
    url: str
    tokens: dict[str, str] = field(default_factory=dict)
    browser: httpx.AsyncClient = field(init=False)  # signed in (admin) before the test starts
    csrf: str = ""  # the browser's session's CSRF token
    _stack: AsyncExitStack = field(default_factory=AsyncExitStack)

    def client(self) -> httpx.AsyncClient:
        """A new browser-like client with no session (closed with the server)."""
        return httpx.AsyncClient(base_url=self.url, timeout=30, follow_redirects=False)

    async def signed_in(self, scope: str = "admin") -> httpx.AsyncClient:
        """A client holding a session of `scope`, signed in as a person would."""
        client = await self._stack.enter_async_context(self.client())
        if scope == "admin":
            code = self.ui.sessions.issue_link_code()
            answer = await client.get(f"/login/once/{code}")
        else:
            answer = await client.post("/login", data={"token": self.tokens[scope]})
            # Sign-ins are rate-limited per address: each test's sign-ins are few and spaced
            # by the limiter's own clock only when the test moves it.
        assert answer.status_code == 303, answer.text
        assert "orch_session" in client.cookies
        return client


@asynccontextmanager
async def ui_serving(
    settings: Settings, *dags: DAG, clock: Clock | None = None
) -> AsyncIterator[UiServed]:
    async with Engine.open(settings, dagbag=bag_of(*dags), clock=clock) as engine:
        registry = await ApiRegistry.load(engine.store, environ={})
        api = ApiContext(engine, registry)
        app, ui = build_app(api)
        try:
            async with anyio.create_task_group() as tg:
                url = await tg.start(serve_api, app, settings)
                served = UiServed(engine, api, ui, url)
                for scope in SCOPES:
                    _, text = await registry.create_token(
                        engine.store, f"ui-{scope}", scope, now=engine.clock.now(), expires_at=None
                    )
                    served.tokens[scope] = text
                async with served._stack:
                    served.browser = await served.signed_in()
                    served.csrf = csrf_of((await served.browser.get("/")).text)
                    yield served
                tg.cancel_scope.cancel()
        finally:
            ui.close()


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
