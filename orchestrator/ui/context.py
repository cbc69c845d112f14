"""What every page works with: the API's context, sessions, templates, and stream limits."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

import anyio
from starlette.responses import HTMLResponse
from starlette.templating import Jinja2Templates

from orchestrator.api.inputs import body_bytes
from orchestrator.api.tokens import allows
from orchestrator.errors import AuthError
from orchestrator.ui import formats, svg
from orchestrator.ui.pages import PUBLISHED_KEY
from orchestrator.ui.sessions import Session, SessionBook, load_key
from orchestrator.ui.stream import stream_since

if TYPE_CHECKING:
    from collections.abc import Callable

    from starlette.requests import Request

    from orchestrator.alerts.sender import ChannelStatus
    from orchestrator.api.context import ApiContext
    from orchestrator.clock import Clock
    from orchestrator.config import Settings
    from orchestrator.scheduling.engine import Engine
    from orchestrator.store import Store

TEMPLATES = Path(__file__).parent / "templates"
STATIC = Path(__file__).parent / "static"


def make_templates() -> Jinja2Templates:
    """Jinja2 with autoescape on for every template (all are .html), and our filters."""
    templates = Jinja2Templates(directory=TEMPLATES)
    env = templates.env
    env.autoescape = True
    env.trim_blocks, env.lstrip_blocks = True, True
    env.filters.update(formats.FILTERS)
    env.filters.update(svg_points=svg.points, state_class=svg.state_class)
    env.globals["can"] = can
    return templates


def can(session: Session | None, scope: str) -> bool:
    """In templates: may this session do what needs `scope`?"""
    return session is not None and allows(session.scope, scope)


class LastError(logging.Handler):
    """Keeps the daemon's last ERROR (or worse) log line, for the home page."""

    def __init__(self) -> None:
        super().__init__(level=logging.ERROR)
        self.message: str | None = None
        self.at: float | None = None

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.message = f"{record.name}: {record.getMessage()}"[:1000]
            self.at = record.created
        except Exception:  # a log call with bad arguments must not break logging
            self.handleError(record)


@dataclass(eq=False)
class UiContext:
    """The daemon's parts the UI reaches; one per running server."""

    api: ApiContext
    sessions: SessionBook
    templates: Jinja2Templates = field(default_factory=make_templates)
    streams: dict[str, int] = field(default_factory=dict)  # open SSE streams per client
    started_at: float = 0.0
    last_error: LastError = field(default_factory=LastError)
    render_slots: anyio.CapacityLimiter = field(default_factory=lambda: anyio.CapacityLimiter(2))
    channels: Callable[[], list[ChannelStatus]] = field(default=list)  # alert channels' health

    @classmethod
    def for_api(cls, api: ApiContext) -> UiContext:
        settings = api.settings
        key = load_key(settings.state_dir)
        book = SessionBook(key, api.clock, lifetime=settings.ui_session_seconds)
        ui = cls(api=api, sessions=book, started_at=api.clock.now())
        logging.getLogger("orchestrator").addHandler(ui.last_error)
        return ui

    def close(self) -> None:
        """Stop keeping the last error (the daemon's log goes on without us)."""
        logging.getLogger("orchestrator").removeHandler(self.last_error)

    @property
    def engine(self) -> Engine:
        return self.api.engine

    @property
    def store(self) -> Store:
        return self.api.store

    @property
    def settings(self) -> Settings:
        return self.api.settings

    @property
    def clock(self) -> Clock:
        return self.api.clock

    async def reads(self) -> Store:
        """The store on the UI's own read connection: a heavy page never queues the engine."""
        return await self.store.ui_reads()

    def session_of(self, cookie: str | None) -> Session | None:
        """The cookie's session, if valid and (for a token's session) its token still is."""
        session = self.sessions.read(cookie)
        if session is None or session.token_id is None:
            return session
        record = self.api.registry.tokens.get(session.token_id)
        now = self.clock.now()
        if record is None or record.revoked_at is not None:
            return None
        if record.expires_at is not None and now >= record.expires_at:
            return None
        return session

    async def read_form(self, request: Request) -> dict[str, str]:
        """The url-encoded form of a POST, read once (at most `api_max_body` bytes)."""
        cached = request.scope.get("orchestrator.form")
        if cached is None:
            body = await body_bytes(self.api, request)
            fields = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
            cached = {name: values[-1] for name, values in fields.items()}
            request.scope["orchestrator.form"] = cached
        form: dict[str, str] = cached
        return form

    def render(
        self,
        request: Request,
        session: Session | None,
        template: str,
        status: int = 200,
        **context: Any,
    ) -> HTMLResponse:
        base = {
            "session": session,
            "csrf": self.sessions.csrf(session) if session else "",
            "now": self.clock.now(),
            "path": request.url.path,
            "stream_url": stream_since(
                context.pop("stream_url", "/ui/stream"),
                request.scope.get(PUBLISHED_KEY, self.engine.feed.published),
            ),
        }
        response: HTMLResponse = self.templates.TemplateResponse(
            request, template, {**base, **context}, status_code=status
        )
        return response

    async def render_in_thread(
        self,
        request: Request,
        session: Session | None,
        template: str,
        **context: Any,
    ) -> HTMLResponse:
        """`render` in a worker thread, for a big page (the grid's 5,000 cells).

        Rendering it took ~40 ms of CPU; on the event loop, twenty browsers asking at once
        held the loop (the engine's too) for 400 ms. In a thread the loop still gets its turn
        every GIL switch interval; `render_slots` keeps big renders from piling up.
        """
        work = partial(self.render, request, session, template, **context)
        return await anyio.to_thread.run_sync(work, limiter=self.render_slots)

    def error_page(
        self, request: Request, session: Session | None, status: int, message: str
    ) -> HTMLResponse:
        return self.render(request, session, "error.html", status, code=status, message=message)

    def require_token_login(self, authorization: str) -> Session:
        """A session for whoever holds this bearer token (`AuthError` when it is no good)."""
        record = self.api.authenticate(authorization, "read")
        if record.token_id is None:  # pragma: no cover - every stored token has an id
            raise AuthError("this token cannot sign in", code="invalid_token")
        return self.sessions.open_session(scope=record.scope, token_id=record.token_id)
