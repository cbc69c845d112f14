"""Every route of the API refuses whoever it should: walked from the OpenAPI document itself.

A route added without an auth decision cannot pass: `Endpoint.auth` is required, the document
is built from the same list as the routes, and the first test checks the two agree.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import httpx
from apikit import Served, serving

from orchestrator import DAG, task
from orchestrator.api.app import ENDPOINTS, OPENAPI_PATH, create_app
from orchestrator.config import Settings

_LOWER = {"trigger": "read", "admin": "trigger"}


def hello_dag() -> DAG:
    with DAG("hello") as dag:

        @task
        def say() -> str:
            return "hello"

        say()
    return dag


def operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method.upper(), path, operation)
        for path, methods in document["paths"].items()
        for method, operation in methods.items()
    ]


def concrete(path: str) -> str:
    return re.sub(r"{\w+}", "no-such-thing", path)


async def call(served: Served, method: str, path: str, **kwargs: Any) -> httpx.Response:
    return await served.client.request(method, concrete(path), **kwargs)


async def read_document(served: Served) -> dict[str, Any]:
    answer = await served.client.get(OPENAPI_PATH, headers=served.auth("read"))
    assert answer.status_code == 200
    document: dict[str, Any] = answer.json()
    return document


async def test_the_document_lists_every_route_the_app_serves_and_each_has_a_decision(
    make_settings: Callable[..., Settings],
) -> None:
    async with serving(make_settings(), hello_dag()) as served:
        document = await read_document(served)
    listed = {(method, path) for method, path, _ in operations(document)}
    app = create_app(served.api)
    routed = {(m, route.path) for route in app.routes for m in route.methods if m != "HEAD"}  # type: ignore[attr-defined]
    assert listed == routed
    assert len(listed) == len(ENDPOINTS) >= 20
    for method, path, operation in operations(document):
        decided = "x-required-scope" in operation or "x-auth" in operation
        assert decided or operation["security"] == [], (method, path)
    public = [
        (m, p) for m, p, op in operations(document) if op["security"] == [] and "x-auth" not in op
    ]
    assert public == [("GET", "/api/v1/health")]


async def test_every_token_route_refuses_no_token_a_bad_one_and_too_small_a_scope(
    make_settings: Callable[..., Settings],
) -> None:
    async with serving(make_settings(), hello_dag()) as served:
        document = await read_document(served)
        checked = 0
        for method, path, operation in operations(document):
            scope = operation.get("x-required-scope")
            if scope is None:
                continue
            await expect(served, method, path, {}, 401, "missing_token")
            bad = {"Authorization": "Bearer orch_000000000000_" + "x" * 43}
            await expect(served, method, path, bad, 401, "invalid_token")
            await expect(served, method, path, {"Authorization": "Basic abc"}, 401, "invalid_token")
            if scope in _LOWER:
                lower = served.auth(_LOWER[scope])
                await expect(served, method, path, lower, 403, "insufficient_scope")
            checked += 1
    assert checked == len(ENDPOINTS) - 2  # all but health and the webhook receiver


async def expect(
    served: Served, method: str, path: str, headers: dict[str, str], status: int, code: str
) -> None:
    answer = await call(served, method, path, headers=headers)
    assert answer.status_code == status, (method, path, answer.text)
    error = answer.json()["error"]
    assert (error["status"], error["code"]) == (status, code), (method, path, error)
    sent = headers.get("Authorization", "").removeprefix("Bearer ")
    assert all(text not in error["message"] for text in (*served.tokens.values(), sent) if text)


async def test_revoked_and_expired_tokens_are_refused_on_every_route(
    make_settings: Callable[..., Settings],
) -> None:
    async with serving(make_settings(), hello_dag()) as served:
        registry, store, now = served.api.registry, served.engine.store, served.engine.clock.now()
        revoked, revoked_text = await registry.create_token(
            store, "r", "admin", now=now, expires_at=None
        )
        await registry.revoke_token(store, revoked.token_id, now=now)
        _, expired_text = await registry.create_token(
            store, "e", "admin", now=now - 10, expires_at=now - 1
        )
        document = await read_document(served)
        for method, path, operation in operations(document):
            if "x-required-scope" not in operation:
                continue
            for text, code in ((revoked_text, "revoked_token"), (expired_text, "expired_token")):
                headers = {"Authorization": f"Bearer {text}"}
                await expect(served, method, path, headers, 401, code)


async def test_the_webhook_route_refuses_unsigned_deliveries_and_health_needs_nothing(
    make_settings: Callable[..., Settings],
) -> None:
    async with serving(make_settings(), hello_dag()) as served:
        await served.add_webhook("deploy", "hello", "s3cret")
        answer = await served.client.post("/hooks/deploy", content=b"{}")
        assert answer.status_code == 401
        assert answer.json()["error"]["code"] == "bad_signature"
        bearer = await served.client.post(
            "/hooks/deploy", content=b"{}", headers=served.auth("admin")
        )
        assert bearer.status_code == 401  # a token is no signature
        health = await served.client.get("/api/v1/health")
        assert (health.status_code, health.json()["status"]) == (200, "ok")


async def test_a_token_in_the_query_string_is_refused_even_when_valid(
    make_settings: Callable[..., Settings],
) -> None:
    async with serving(make_settings(), hello_dag()) as served:
        for name in ("token", "access_token"):
            url = f"/api/v1/dags?{name}={served.tokens['admin']}"
            answer = await served.client.get(url, headers=served.auth("admin"))
            assert answer.status_code == 400
            error = answer.json()["error"]
            assert error["code"] == "token_in_query"
            assert served.tokens["admin"] not in answer.text
        fine = await served.client.get("/api/v1/dags", headers=served.auth("read"))
        assert fine.status_code == 200
        assert [dag["dag_id"] for dag in fine.json()["dags"]] == ["hello"]
