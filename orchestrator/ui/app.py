"""The web UI's routes, mounted beside the API on the daemon's one Starlette app.

```
app, ui = build_app(api)     # the API's routes, the UI's, and SecurityHeaders around them
```

Every page is a `Page` with its auth decision (see pages.py); the assets under `/static/`
are public and vendored in the package (htmx, its SSE extension, our script and stylesheet):
nothing is fetched from elsewhere, and there is no build step.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.middleware.gzip import DEFAULT_EXCLUDED_CONTENT_TYPES, GZipMiddleware
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from orchestrator.api.app import create_app
from orchestrator.ui import (
    actions,
    dag_page,
    dags,
    events_page,
    home,
    login,
    run_log,
    run_page,
    stream,
    triggers_page,
)
from orchestrator.ui.context import STATIC, UiContext
from orchestrator.ui.pages import Page, bind

if TYPE_CHECKING:
    from collections.abc import Callable

    from starlette.applications import Starlette

    from orchestrator.alerts.sender import ChannelStatus
    from orchestrator.api.context import ApiContext

PAGES: tuple[Page, ...] = (
    *login.PAGES,
    *home.PAGES,
    *dags.PAGES,
    *dag_page.PAGES,
    *run_page.PAGES,
    *run_log.PAGES,
    *triggers_page.PAGES,
    *events_page.PAGES,
    *actions.PAGES,
    *stream.PAGES,
)

#: No inline script or style anywhere: scripts and styles come from /static/ only.
CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)
SECURITY_HEADERS = (
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
)


def ui_routes(ui: UiContext) -> list[BaseRoute]:
    routes: list[BaseRoute] = [
        Route(page.path, bind(page, ui), methods=[page.method]) for page in PAGES
    ]
    routes.append(Mount("/static", StaticFiles(directory=STATIC), name="static"))
    return routes


class SecurityHeaders:
    """Adds the headers above to every HTTP answer (API answers too: they cost nothing there)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                headers.extend(item for item in SECURITY_HEADERS if item[0] not in present)
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)


class GZipWhenAccepted(GZipMiddleware):
    """Starlette's GZip, for the clients that accept it; the others' answers pass untouched.

    For a client without gzip (webhook senders, most API clients) Starlette still wraps every
    answer to look at its headers, only to add `Vary: Accept-Encoding` to a big one: 4% of a
    webhook delivery's time on the loop, for a header an identity answer does not need.
    """

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not _accepts_gzip(scope):
            await self.app(scope, receive, send)
            return
        await super().__call__(scope, receive, send)


def _accepts_gzip(scope: Scope) -> bool:
    return any(name == b"accept-encoding" and b"gzip" in value for name, value in scope["headers"])


def build_app(
    api: ApiContext, *, channels: Callable[[], list[ChannelStatus]] | None = None
) -> tuple[Starlette, UiContext]:
    """The daemon's one app: the API, the UI beside it, security headers on every answer.

    `channels` tells how the alert channels are doing, for the home page.
    """
    ui = UiContext.for_api(api)
    if channels is not None:
        ui.channels = channels
    app = create_app(api, routes=ui_routes(ui))
    # Pages and JSON compress well (a 200-task grid: 155 KB to a few KB). Never a stream
    # (text/event-stream would be held back) nor a log (a 1 GB download is not the daemon's
    # CPU's business): those stay as they are.
    app.add_middleware(
        GZipWhenAccepted,
        minimum_size=1024,
        exclude_content_types=(*DEFAULT_EXCLUDED_CONTENT_TYPES, "text/plain"),
    )
    app.add_middleware(SecurityHeaders)
    return app, ui
