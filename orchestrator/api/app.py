"""The ASGI app: every `Endpoint` as a Starlette route, behind its auth decision.

```
create_app(ApiContext(engine, registry))   # served by `orchestrator.api.server`
```

Each route is wrapped once: refuse a token in the query string, check the bearer token's
scope (or leave it to the webhook's signature check), call the handler, and turn what it
returns into JSON. Errors become the one JSON shape of `problems.py`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from orchestrator.api import (
    adminroutes,
    dagroutes,
    hooks,
    inforoutes,
    metricsroute,
    runroutes,
    taskroutes,
)
from orchestrator.api.answers import JsonAnswer
from orchestrator.api.endpoints import Endpoint
from orchestrator.api.inputs import refuse_token_in_query
from orchestrator.api.openapi import openapi_document
from orchestrator.api.problems import http_error, orchestrator_error, unexpected_error
from orchestrator.errors import OrchestratorError

if TYPE_CHECKING:
    from starlette.requests import Request

    from orchestrator.api.context import ApiContext
    from orchestrator.config import Settings

OPENAPI_PATH = "/api/v1/openapi.json"


async def openapi(api: ApiContext, request: Request) -> dict[str, Any]:
    return openapi_document(endpoints(api.settings))


ENDPOINTS: tuple[Endpoint, ...] = (
    *inforoutes.ENDPOINTS,
    Endpoint(
        method="GET",
        path=OPENAPI_PATH,
        handler=openapi,
        auth="read",
        summary="This API's OpenAPI 3.1 document",
        tag="daemon",
    ),
    *dagroutes.ENDPOINTS,
    *runroutes.ENDPOINTS,
    *taskroutes.ENDPOINTS,
    *adminroutes.ENDPOINTS,
    *hooks.ENDPOINTS,
    metricsroute.ENDPOINT,
)


def endpoints(settings: Settings) -> tuple[Endpoint, ...]:
    """Every endpoint, with the auth decisions the settings change (`metrics_public`)."""
    return tuple(metricsroute.as_configured(endpoint, settings) for endpoint in ENDPOINTS)


def create_app(api: ApiContext, *, routes: Sequence[BaseRoute] = ()) -> Starlette:
    """The API's routes, then `routes` (the web UI's, which the daemon adds)."""
    own: list[BaseRoute] = [
        Route(endpoint.path, _bind(endpoint, api), methods=[endpoint.method])
        for endpoint in _busiest_first(endpoints(api.settings))
    ]
    return Starlette(
        routes=[*own, *routes],
        exception_handlers={
            OrchestratorError: orchestrator_error,
            HTTPException: http_error,
            Exception: unexpected_error,
        },
    )


def _busiest_first(listed: tuple[Endpoint, ...]) -> list[Endpoint]:
    """The webhook route first: deliveries are most of the traffic, and Starlette tries the
    routes in order (25 patterns matched per delivery were 4% of its loop time). No other
    path starts with /hooks/, so the order changes no answer."""
    return sorted(listed, key=lambda endpoint: endpoint.auth != "signature")


def _bind(endpoint: Endpoint, api: ApiContext) -> Callable[[Request], Awaitable[Response]]:
    async def handle(request: Request) -> Response:
        refuse_token_in_query(request)
        if endpoint.auth not in ("public", "signature"):
            api.authenticate(request.headers.get("authorization"), endpoint.auth)
        result = await endpoint.handler(api, request)
        if isinstance(result, Response):
            return result
        return JsonAnswer(result, status_code=endpoint.status)

    handle.__name__ = endpoint.operation_id
    return handle
