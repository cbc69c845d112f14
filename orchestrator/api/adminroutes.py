"""Tokens and webhooks, for admins: create (a token is shown once), list, revoke or remove."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.responses import JSONResponse

from orchestrator.api.endpoints import Endpoint
from orchestrator.api.inputs import json_object, optional_bool, optional_text, path_text
from orchestrator.api.tokens import MAX_EXPIRES_IN, check_expires_in
from orchestrator.api.views import record_json
from orchestrator.api.webhookconfig import webhook_from_json
from orchestrator.errors import ApiError

if TYPE_CHECKING:
    from starlette.requests import Request

    from orchestrator.api.context import ApiContext


async def list_tokens(api: ApiContext, request: Request) -> dict[str, Any]:
    tokens = sorted(api.registry.tokens.values(), key=lambda token: token.created_at)
    return {"tokens": [record_json(token, drop=("secret_hash",)) for token in tokens]}


async def create_token(api: ApiContext, request: Request) -> JSONResponse:
    """A new token; its text is in this answer and nowhere else, ever."""
    body = await json_object(api, request)
    scope = optional_text(body, "scope") or "read"
    name = optional_text(body, "name") or "api"
    expires_in = check_expires_in(body.get("expires_in"))
    now = api.clock.now()
    expires_at = None if expires_in is None else now + expires_in
    record, text = await api.registry.create_token(
        api.store, name, scope, now=now, expires_at=expires_at
    )
    answer = {**record_json(record, drop=("secret_hash",)), "token": text}
    return JSONResponse(answer, status_code=201)


async def revoke_token(api: ApiContext, request: Request) -> dict[str, Any]:
    token_id = path_text(request, "token_id")
    if token_id not in api.registry.tokens:
        raise ApiError(f"there is no API token with id {token_id!r}", status=404, code="not_found")
    await api.registry.revoke_token(api.store, token_id, now=api.clock.now())
    return {"token_id": token_id, "revoked": True}


async def list_webhooks(api: ApiContext, request: Request) -> dict[str, Any]:
    hooks = sorted(api.registry.webhooks.values(), key=lambda hook: hook.name)
    return {"webhooks": [record_json(hook) for hook in hooks]}


async def add_webhook(api: ApiContext, request: Request) -> JSONResponse:
    body = await json_object(api, request)
    replace = optional_bool(body, "replace", default=False)
    fields = {name: value for name, value in body.items() if name != "replace"}
    record = webhook_from_json(fields, created_at=api.clock.now())
    api.engine.dagbag.get(record.dag_id)
    await api.registry.add_webhook(api.store, record, replace=replace)
    return JSONResponse(record_json(record), status_code=201)


async def remove_webhook(api: ApiContext, request: Request) -> dict[str, Any]:
    name = path_text(request, "name")
    if api.registry.webhook(name) is None:
        raise ApiError(f"there is no webhook {name!r}", status=404, code="not_found")
    await api.registry.remove_webhook(api.store, name)
    return {"name": name, "removed": True}


ENDPOINTS = (
    Endpoint(
        method="GET",
        path="/api/v1/tokens",
        handler=list_tokens,
        auth="admin",
        summary="List API tokens (ids, names, scopes, expiry; never the tokens themselves)",
        tag="admin",
    ),
    Endpoint(
        method="POST",
        path="/api/v1/tokens",
        handler=create_token,
        auth="admin",
        summary="Create an API token; the answer is the only place its text is shown",
        tag="admin",
        body={
            "type": "object",
            "properties": {
                "scope": {"enum": ["read", "trigger", "admin"]},
                "name": {"type": "string"},
                "expires_in": {
                    "type": "number",
                    "exclusiveMinimum": 0,
                    "maximum": MAX_EXPIRES_IN,
                    "description": "Seconds until it expires (left out: never)",
                },
            },
        },
        status=201,
    ),
    Endpoint(
        method="DELETE",
        path="/api/v1/tokens/{token_id}",
        handler=revoke_token,
        auth="admin",
        summary="Revoke a token: it is refused from now on",
        tag="admin",
    ),
    Endpoint(
        method="GET",
        path="/api/v1/webhooks",
        handler=list_webhooks,
        auth="admin",
        summary="List webhooks (where their secrets are read from; never the secrets)",
        tag="admin",
    ),
    Endpoint(
        method="POST",
        path="/api/v1/webhooks",
        handler=add_webhook,
        auth="admin",
        summary="Add a webhook: deliveries to /hooks/{name} start runs of its DAG",
        tag="admin",
        body={"type": "object", "required": ["name", "dag_id"]},
        status=201,
    ),
    Endpoint(
        method="DELETE",
        path="/api/v1/webhooks/{name}",
        handler=remove_webhook,
        auth="admin",
        summary="Remove a webhook: deliveries to its URL are refused from now on",
        tag="admin",
    ),
)
