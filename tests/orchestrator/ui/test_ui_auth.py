"""Every page of the web UI refuses whoever it should: walked from `PAGES` itself.

A route added without an auth decision cannot pass: the first test checks that every route
the app serves, beside the API's and the static assets, is a `Page` (and `Page.auth` is
required). Time moves with a `FakeClock`: the session expiry, the one-time links and the
sign-in rate limit all read it.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import httpx
from apikit import hello_dag
from itsdangerous import URLSafeSerializer
from uikit import UiServed, csrf_of, ui_serving

from orchestrator.api.app import create_app
from orchestrator.api.tokens import allows
from orchestrator.clock import FakeClock
from orchestrator.config import Settings
from orchestrator.ui.app import PAGES, build_app
from orchestrator.ui.pages import CSRF_HEADER, Page
from orchestrator.ui.sessions import COOKIE_NAME, LINK_SECONDS, Session, SessionBook

LOGIN_SPACING = 10.0  # seconds the clock moves between sign-ins: past the login rate limit
_LOWER = {"trigger": "read", "admin": "trigger"}


def concrete(path: str) -> str:
    """A page's path with its parameters filled in: a DAG that exists, a run that does not."""
    return re.sub(r"{\w+}", "no-such-thing", path.replace("{dag_id}", "hello"))


def guarded() -> list[Page]:
    return [page for page in PAGES if page.auth != "public"]


@asynccontextmanager
async def serving(settings: Settings) -> AsyncIterator[tuple[UiServed, FakeClock]]:
    clock = FakeClock()
    async with ui_serving(settings, hello_dag(), clock=clock) as served:
        yield served, clock


async def sign_in(served: UiServed, clock: FakeClock, scope: str) -> httpx.AsyncClient:
    clock.advance(LOGIN_SPACING)
    return await served.signed_in(scope)


async def request_as(
    served: UiServed, page: Page, cookie: str | None, **kwargs: object
) -> httpx.Response:
    async with served.client() as client:
        if cookie is not None:
            client.cookies.set(COOKIE_NAME, cookie)
        return await client.request(page.method, concrete(page.path), **kwargs)  # type: ignore[arg-type]


def assert_treated_as_signed_out(page: Page, answer: httpx.Response) -> None:
    if page.method == "GET":
        assert answer.status_code == 303, (page.path, answer.status_code, answer.text[:300])
        location = answer.headers["location"]
        assert location.startswith("/login?next=%2F"), (page.path, location)
    else:
        assert answer.status_code == 401, (page.path, answer.status_code, answer.text[:300])
        assert "Sign in first" in answer.text


def tampered(cookie: str, **changes: object) -> str:
    """The cookie's payload edited, its signature kept (itsdangerous: `payload.signature`)."""
    payload, signature = cookie.rsplit(".", 1)
    data = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    data.update(changes)
    edited = base64.urlsafe_b64encode(json.dumps(data, separators=(",", ":")).encode())
    return f"{edited.decode().rstrip('=')}.{signature}"


async def test_every_route_beside_the_api_and_the_assets_is_a_page_with_a_decision(
    make_settings: Callable[..., Settings],
) -> None:
    async with serving(make_settings()) as (served, _):
        api_routes = {
            (method, route.path)
            for route in create_app(served.api).routes
            for method in getattr(route, "methods", ())
        }
        app, ui = build_app(served.api)
        ui.close()
    routed = {
        (method, route.path)
        for route in app.routes
        for method in getattr(route, "methods", None) or ()
        if method != "HEAD"
    }
    mounts = [route.path for route in app.routes if not hasattr(route, "methods")]
    assert mounts == ["/static"]
    ui_routed = {(m, p) for m, p in routed if (m, p) not in api_routes}
    assert ui_routed == {(page.method, page.path) for page in PAGES}
    assert len(PAGES) == len(ui_routed) >= 15
    public = sorted((page.method, page.path) for page in PAGES if page.auth == "public")
    assert public == [("GET", "/login"), ("GET", "/login/once/{code}"), ("POST", "/login")]


async def test_no_cookie_sends_a_get_to_sign_in_and_refuses_a_post(
    make_settings: Callable[..., Settings],
) -> None:
    async with serving(make_settings()) as (served, _):
        for page in guarded():
            answer = await request_as(served, page, None)
            assert_treated_as_signed_out(page, answer)
            if page.method == "GET":
                assert answer.headers["location"].endswith(concrete(page.path).replace("/", "%2F"))


async def test_forged_edited_foreign_and_expired_cookies_count_as_none(
    make_settings: Callable[..., Settings],
) -> None:
    async with serving(make_settings()) as (served, clock):
        reader = await sign_in(served, clock, "read")
        genuine = reader.cookies[COOKIE_NAME]
        assert served.ui.sessions.read(genuine) is not None
        session = served.ui.sessions.read(genuine)
        assert session is not None
        admin = Session(session_id=session.session_id, scope="admin", expires_at=session.expires_at)
        foreign = SessionBook(b"k" * 32, clock, lifetime=3600).cookie(admin)
        other_salt = URLSafeSerializer(b"k" * 32).dumps({"sid": "x", "scope": "admin"})
        forged = [
            "random-" + "x" * 40,
            "",
            "a" * 5000,
            tampered(genuine, scope="admin"),
            tampered(genuine, exp=session.expires_at + 10**9),
            tampered(genuine, tok=None),
            foreign,
            str(other_salt),
        ]
        for page in guarded():
            for cookie in forged:
                assert_treated_as_signed_out(page, await request_as(served, page, cookie))
        clock.advance(served.ui.settings.ui_session_seconds + 1)
        for page in guarded():
            assert_treated_as_signed_out(page, await request_as(served, page, genuine))


async def test_too_small_a_scope_gets_a_403_page_naming_the_scope(
    make_settings: Callable[..., Settings],
) -> None:
    async with serving(make_settings()) as (served, clock):
        browsers = {scope: await sign_in(served, clock, scope) for scope in ("read", "trigger")}
        csrf = {scope: csrf_of((await b.get("/")).text) for scope, b in browsers.items()}
        checked = 0
        for page in guarded():
            for scope, browser in browsers.items():
                if allows(scope, page.auth):
                    continue
                answer = await browser.request(
                    page.method, concrete(page.path), headers={CSRF_HEADER: csrf[scope]}
                )
                assert answer.status_code == 403, (page.path, scope, answer.text[:300])
                assert f"This needs the {page.auth} scope" in answer.text
                checked += 1
        assert checked >= 6


async def test_a_post_needs_its_own_session_csrf_token_and_a_same_site_origin(
    make_settings: Callable[..., Settings],
) -> None:
    async with serving(make_settings()) as (served, clock):
        admin = await sign_in(served, clock, "admin")
        other = await sign_in(served, clock, "admin")
        mine = csrf_of((await admin.get("/")).text)
        theirs = csrf_of((await other.get("/")).text)
        assert mine != theirs
        site = served.url
        posts = [page for page in guarded() if page.method == "POST"]
        assert len(posts) >= 6
        for page in posts:
            path = concrete(page.path)
            refused = [
                {},
                {"data": {"csrf": ""}},
                {"data": {"csrf": theirs}},
                {"headers": {CSRF_HEADER: theirs}},
                {"headers": {CSRF_HEADER: mine, "Origin": "http://evil.example"}},
                {"data": {"csrf": mine}, "headers": {"Origin": "null"}},
            ]
            for kwargs in refused:
                answer = await admin.post(path, **kwargs)  # type: ignore[arg-type]
                assert answer.status_code == 403, (path, kwargs, answer.text[:300])
                assert "CSRF" in answer.text
            if page.path == "/logout":
                continue  # passing would sign this browser out: checked in its own test
            passed = await admin.post(path, headers={CSRF_HEADER: mine, "Origin": site})
            assert passed.status_code not in (401, 403), (path, passed.text[:300])


async def test_a_logged_out_cookie_replayed_is_refused(
    make_settings: Callable[..., Settings],
) -> None:
    async with serving(make_settings()) as (served, clock):
        browser = await sign_in(served, clock, "admin")
        cookie = browser.cookies[COOKIE_NAME]
        csrf = csrf_of((await browser.get("/")).text)
        out = await browser.post("/logout", data={"csrf": csrf})
        assert (out.status_code, out.headers["location"]) == (303, "/login")
        assert COOKIE_NAME not in browser.cookies
        for page in guarded():
            assert_treated_as_signed_out(page, await request_as(served, page, cookie))


async def test_a_session_of_a_revoked_token_is_refused_at_once(
    make_settings: Callable[..., Settings],
) -> None:
    async with serving(make_settings()) as (served, clock):
        browser = await sign_in(served, clock, "trigger")
        assert (await browser.get("/dags")).status_code == 200
        registry = served.api.registry
        (token,) = [t for t in registry.tokens.values() if t.name == "ui-trigger"]
        assert token.token_id is not None
        await registry.revoke_token(served.engine.store, token.token_id, now=clock.now())
        cookie = browser.cookies[COOKIE_NAME]
        for page in guarded():
            assert_treated_as_signed_out(page, await request_as(served, page, cookie))


async def test_a_login_link_works_once_and_for_two_minutes_only(
    make_settings: Callable[..., Settings],
) -> None:
    async with serving(make_settings()) as (served, clock):
        code = served.ui.sessions.issue_link_code()
        async with served.client() as client:
            first = await client.get(f"/login/once/{code}")
            assert first.status_code == 303
            clock.advance(LOGIN_SPACING)  # the refusal below is the link's, not the limiter's
            second = await client.get(f"/login/once/{code}")
        assert second.status_code == 401
        assert "used already or has expired" in second.text
        stale = served.ui.sessions.issue_link_code()
        clock.advance(LINK_SECONDS + 1)
        async with served.client() as client:
            late = await client.get(f"/login/once/{stale}")
        assert late.status_code == 401
        assert COOKIE_NAME not in late.cookies


async def test_hammered_sign_ins_get_a_429_that_says_why(
    make_settings: Callable[..., Settings],
) -> None:
    async with serving(make_settings()) as (served, clock):
        async with served.client() as client:
            answers = [await client.post("/login", data={"token": "guess"}) for _ in range(5)]
            assert answers[0].status_code == 401
            assert {a.status_code for a in answers[1:]} == {429}
            assert "too many failed sign-ins from this address" in answers[-1].text
            # The right token does not get through the limit either, nor does a link.
            right = await client.post("/login", data={"token": served.tokens["admin"]})
            link = await client.get(f"/login/once/{served.ui.sessions.issue_link_code()}")
            assert (right.status_code, link.status_code) == (429, 429)
            clock.advance(LOGIN_SPACING)
            again = await client.post("/login", data={"token": served.tokens["admin"]})
            assert again.status_code == 303


async def test_next_never_leaves_the_site(make_settings: Callable[..., Settings]) -> None:
    hostile = [
        "//evil.example",
        "//evil.example/dags",
        "http://evil",
        "https://evil.example/",
        "/\\evil.example",
        "\\\\evil.example",
        "javascript:alert(1)",
        "evil.example",
    ]
    async with serving(make_settings()) as (served, clock):
        async with served.client() as client:
            for target in hostile:
                form = await client.get("/login", params={"next": target})
                assert form.status_code == 200
                assert 'name="next" value="/"' in form.text, target
                clock.advance(LOGIN_SPACING)
                answer = await client.post(
                    "/login", data={"token": served.tokens["read"], "next": target}
                )
                assert (answer.status_code, answer.headers["location"]) == (303, "/"), target
            clock.advance(LOGIN_SPACING)
            kept = await client.post(
                "/login", data={"token": served.tokens["read"], "next": "/dags/hello?runs=5"}
            )
            assert kept.headers["location"] == "/dags/hello?runs=5"


async def test_the_session_cookie_is_httponly_strict_and_site_wide(
    make_settings: Callable[..., Settings],
) -> None:
    async with serving(make_settings()) as (served, clock):
        async with served.client() as client:
            link = await client.get(f"/login/once/{served.ui.sessions.issue_link_code()}")
            clock.advance(LOGIN_SPACING)
            token = await client.post("/login", data={"token": served.tokens["read"]})
        for answer in (link, token):
            (header,) = [
                value
                for name, value in answer.headers.multi_items()
                if name == "set-cookie" and value.startswith(f"{COOKIE_NAME}=")
            ]
            flags = {part.strip().lower() for part in header.split(";")[1:]}
            assert {"httponly", "samesite=strict", "path=/"} <= flags, header
            assert not any(flag.startswith("domain") for flag in flags)


async def test_a_sign_in_posted_from_another_site_is_refused(
    make_settings: Callable[..., Settings],
) -> None:
    async with serving(make_settings()) as (served, _clock):
        async with served.client() as client:
            forged = await client.post(
                "/login",
                data={"token": served.tokens["admin"]},
                headers={"Origin": "http://evil.example"},
            )
            assert forged.status_code == 403 and "orch_session" not in client.cookies
            own = await client.post(
                "/login", data={"token": served.tokens["admin"]}, headers={"Origin": served.url}
            )
            assert own.status_code == 303 and "orch_session" in client.cookies
