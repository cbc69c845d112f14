"""The OpenAPI 3.1 document, built from the same `Endpoint` list as the routes.

Served at `/api/v1/openapi.json`. Each operation says who may call it: `security` names the
bearer scheme and `x-required-scope` the scope; the webhook route says `x-auth: signature`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from importlib.metadata import version
from typing import Any

from orchestrator.api.endpoints import Endpoint, Param

_PATH_PARAM = re.compile(r"{(\w+)}")

_ERROR_SCHEMA = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["status", "code", "message"],
            "properties": {
                "status": {"type": "integer"},
                "code": {"type": "string", "description": "A stable word for scripts"},
                "message": {"type": "string", "description": "A sentence for people"},
            },
        }
    },
}


def openapi_document(endpoints: Iterable[Endpoint]) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for endpoint in endpoints:
        paths.setdefault(endpoint.path, {})[endpoint.method.lower()] = _operation(endpoint)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "orchestrator",
            "version": version("orchestrator"),
            "description": "The orchestrator daemon's HTTP API and webhook receiver.",
        },
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {"Error": _ERROR_SCHEMA},
        },
    }


def _operation(endpoint: Endpoint) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "operationId": endpoint.operation_id,
        "summary": endpoint.summary,
        "tags": [endpoint.tag],
        "parameters": _parameters(endpoint),
        "responses": _responses(endpoint),
        **_security(endpoint),
    }
    if endpoint.body is not None:
        operation["requestBody"] = {
            "required": False,
            "content": {"application/json": {"schema": endpoint.body}},
        }
    return operation


def _parameters(endpoint: Endpoint) -> list[dict[str, Any]]:
    path = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in _PATH_PARAM.findall(endpoint.path)
    ]
    query = [
        {
            "name": param.name,
            "in": "query",
            "required": False,
            "description": param.description,
            "schema": _param_schema(param),
        }
        for param in endpoint.query
    ]
    return path + query


def _param_schema(param: Param) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": param.type}
    if param.enum:
        schema["enum"] = list(param.enum)
    for key in ("minimum", "maximum", "default"):
        if getattr(param, key) is not None:
            schema[key] = getattr(param, key)
    return schema


def _responses(endpoint: Endpoint) -> dict[str, Any]:
    error = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
    responses: dict[str, Any] = {
        str(endpoint.status): {
            "description": "Success",
            "content": {endpoint.response: {"schema": {"type": "object"}}},
        },
        "400": {"description": "Bad request", **error},
    }
    if endpoint.auth != "public":
        responses["401"] = {"description": "No, a bad, expired or revoked credential", **error}
    if endpoint.auth not in ("public", "signature"):
        responses["403"] = {"description": "The token's scope is too small", **error}
    if _PATH_PARAM.search(endpoint.path):
        responses["404"] = {"description": "Nothing has this id", **error}
    if endpoint.method != "GET":
        responses["409"] = {"description": "The state does not allow it (paused, ended)", **error}
    if endpoint.body is not None:
        responses["413"] = {"description": "The body is larger than api_max_body", **error}
    if endpoint.method == "POST":
        responses["429"] = {"description": "A rate or queue limit; see Retry-After", **error}
        responses["503"] = {"description": "Stopping, or the store is unavailable", **error}
    return responses


def _security(endpoint: Endpoint) -> dict[str, Any]:
    if endpoint.auth == "public":
        return {"security": []}
    if endpoint.auth == "signature":
        return {"security": [], "x-auth": "signature"}
    return {"security": [{"bearer": []}], "x-required-scope": endpoint.auth}
