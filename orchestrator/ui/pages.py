"""A page is a value: method, path, who may see it, and the handler that renders it.

Every route of the web UI is declared as a `Page`, exactly as the API declares `Endpoint`s,
and `auth` is required: the auth walk (tests/orchestrator/ui/test_ui_auth.py) visits every
page and checks it refuses whoever it should. Binding a page does, in order:

1. read the session cookie (a forged, stale or logged-out one counts as none);
2. no session: a GET is sent to `/login?next=<path>`, anything else gets a 401 page;
3. a session whose scope is too small gets a 403 page;
4. a POST must carry the session's CSRF token (form field `csrf` or header `X-CSRF-Token`),
   and an `Origin` header, when sent, must be this site's: else a 403 page;
5. our own errors become an HTML page with the status the API would give them.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal
from urllib.parse import quote, urlsplit

from starlette.responses import RedirectResponse, Response

from orchestrator.api.problems import status_of
from orchestrator.api.tokens import allows
from orchestrator.errors import OrchestratorError, StoreError
from orchestrator.ui.sessions import COOKIE_NAME, Session

if TYPE_CHECKING:
    from starlette.requests import Request

    from orchestrator.ui.context import UiContext

logger = logging.getLogger("orchestrator.ui")

#: Who may see a page: anyone (the login page, assets), or a session of at least this scope.
PageAuth = Literal["public", "read", "trigger", "admin"]

PageHandler = Callable[["UiContext", "Request", "Session | None"], Awaitable[Response]]

CSRF_FIELD = "csrf"
PUBLISHED_KEY = "orchestrator.published"  # the change feed's count when the request came
CSRF_HEADER = "X-CSRF-Token"


@dataclass(frozen=True, kw_only=True)
class Page:
    """One route of the UI: `handler(ui, request, session)` returns a Response."""

    method: Literal["GET", "POST"]
    path: str
    handler: PageHandler
    auth: PageAuth
    summary: str


def bind(page: Page, ui: UiContext) -> Callable[[Request], Awaitable[Response]]:
    """The Starlette endpoint for `page`: session, scope, CSRF, then the handler."""

    async def handle(request: Request) -> Response:
        # Counted before the handler reads anything: a change committed while the page is
        # being read is then newer than the page, and its stream refreshes it at once.
        request.scope[PUBLISHED_KEY] = ui.engine.feed.published
        session = ui.session_of(request.cookies.get(COOKIE_NAME))
        refusal = await _refusal(page, ui, request, session)
        if refusal is not None:
            return refusal
        try:
            return await page.handler(ui, request, session)
        except OrchestratorError as error:
            status, _ = status_of(error)
            if isinstance(error, StoreError):
                logger.error("%s %s: %s", request.method, request.url.path, error)
            return ui.error_page(request, session, status, str(error))

    handle.__name__ = page.handler.__name__
    return handle


async def _refusal(
    page: Page, ui: UiContext, request: Request, session: Session | None
) -> Response | None:
    if page.auth == "public":
        return None
    if session is None:
        if page.method == "GET":
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            return RedirectResponse(f"/login?next={quote(target, safe='')}", status_code=303)
        return ui.error_page(request, None, 401, "Sign in first: your session has ended.")
    if not allows(session.scope, page.auth):
        return ui.error_page(
            request,
            session,
            403,
            f"This needs the {page.auth} scope; you are signed in with {session.scope}.",
        )
    if page.method == "POST" and not await _same_site_with_token(ui, request, session):
        return ui.error_page(
            request,
            session,
            403,
            "This form is stale or did not come from this page (no valid CSRF token); "
            "reload the page and try again.",
        )
    return None


def cross_site(request: Request) -> bool:
    """True when the browser says the request comes from another site (its `Origin`)."""
    origin = request.headers.get("origin")
    return origin is not None and urlsplit(origin).netloc != request.headers.get("host")


async def _same_site_with_token(ui: UiContext, request: Request, session: Session) -> bool:
    if cross_site(request):
        return False
    sent = request.headers.get(CSRF_HEADER)
    if sent is None:
        form = await ui.read_form(request)
        value = form.get(CSRF_FIELD)
        sent = value if isinstance(value, str) else None
    return ui.sessions.csrf_matches(session, sent)
