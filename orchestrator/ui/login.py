"""Signing in and out: a bearer token at `/login`, or a one-time link from `orchestrator open`.

Failed attempts are rate-limited per client address (`ui_login_rate` a second): each one
takes a token of the address's bucket, and while the bucket is empty every attempt is refused
with a 429 *before* it is looked at, so neither tokens nor link codes can be guessed faster
than that. Attempts that succeed cost nothing: several people (or tests) behind one address
sign in at once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.responses import RedirectResponse, Response

from orchestrator.errors import AuthError, RunLimitError
from orchestrator.ui.pages import Page, cross_site
from orchestrator.ui.sessions import COOKIE_NAME, Session

if TYPE_CHECKING:
    from starlette.requests import Request

    from orchestrator.ui.context import UiContext

_LINK_USED = (
    "This sign-in link was used already or has expired (links work once, for two minutes). "
    "Run `orchestrator open` for a new one, or sign in with a token below."
)


def safe_next(target: str | None) -> str:
    """Where to go after signing in: a path on this site only (no `//host`, no scheme)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


async def login_form(ui: UiContext, request: Request, session: Session | None) -> Response:
    return ui.render(
        request, session, "login.html", next=safe_next(request.query_params.get("next"))
    )


async def login(ui: UiContext, request: Request, session: Session | None) -> Response:
    """A token pasted into the form: a session of the token's scope.

    A form posted from another site is refused: it could sign a browser in as someone else.
    """
    if cross_site(request):
        return ui.error_page(request, None, 403, "Sign in from this site's own /login page.")
    form = await ui.read_form(request)
    target = safe_next(form.get("next"))
    try:
        _refuse_while_limited(ui, request)
        try:
            new = ui.require_token_login(f"Bearer {form.get('token', '').strip()}")
        except AuthError:
            _count_failure(ui, request)
            raise
    except (AuthError, RunLimitError) as error:
        status = 429 if isinstance(error, RunLimitError) else 401
        return ui.render(request, None, "login.html", status, next=target, message=_refusal(error))
    return signed_in(ui, request, new, target)


async def login_once(ui: UiContext, request: Request, session: Session | None) -> Response:
    """`/login/once/<code>`: the local user's link, good once for two minutes; admin scope."""
    try:
        _refuse_while_limited(ui, request)
        if not ui.sessions.redeem_link_code(request.path_params["code"]):
            _count_failure(ui, request)
            return ui.render(request, None, "login.html", 401, next="/", message=_LINK_USED)
    except RunLimitError as error:
        return ui.render(request, None, "login.html", 429, next="/", message=str(error))
    return signed_in(ui, request, ui.sessions.open_session(scope="admin", token_id=None), "/")


async def logout(ui: UiContext, request: Request, session: Session | None) -> Response:
    if session is not None:
        ui.sessions.end(session)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(COOKIE_NAME, path="/", httponly=True, samesite="strict")
    return response


def signed_in(ui: UiContext, request: Request, session: Session, target: str) -> Response:
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(
        COOKIE_NAME,
        ui.sessions.cookie(session),
        max_age=int(ui.sessions.lifetime),
        path="/",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return response


def _limiter_key(request: Request) -> str:
    return f"ui-login:{request.client.host if request.client else 'unknown'}"


def _refuse_while_limited(ui: UiContext, request: Request) -> None:
    """429 before looking at the attempt, while this address has failed too often."""
    rate = ui.settings.ui_login_rate
    wait = ui.api.limiter.waiting_time(_limiter_key(request), rate)
    if wait is not None:
        raise RunLimitError(
            f"too many failed sign-ins from this address; try again in {wait:.0f} s",
            retry_after=wait,
        )


def _count_failure(ui: UiContext, request: Request) -> None:
    """A failed attempt takes a token of the address's bucket (never refused here)."""
    ui.api.limiter.acquire(_limiter_key(request), ui.settings.ui_login_rate)


def _refusal(error: AuthError | RunLimitError) -> str:
    if isinstance(error, RunLimitError):
        return str(error)
    return (
        "That token was not accepted (unknown, revoked, expired or mistyped). Create one "
        "with `orchestrator tokens create --scope read`, or run `orchestrator open` on the "
        "daemon's machine for a one-time link."
    )


PAGES = (
    Page(
        method="GET",
        path="/login",
        handler=login_form,
        auth="public",
        summary="The sign-in form",
    ),
    Page(
        method="POST",
        path="/login",
        handler=login,
        auth="public",
        summary="Sign in with a bearer token",
    ),
    Page(
        method="GET",
        path="/login/once/{code}",
        handler=login_once,
        auth="public",
        summary="Sign in with a one-time link from `orchestrator open`",
    ),
    Page(
        method="POST",
        path="/logout",
        handler=logout,
        auth="read",
        summary="Sign out: this session's cookie is refused from now on",
    ),
)
