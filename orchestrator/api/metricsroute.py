"""`GET /metrics`: the engine's metrics in Prometheus's text format.

It needs a `read` token, like every other route that tells what the daemon does; with
`metrics_public = true` it needs none, for a Prometheus on the same host that holds no token
(the API listens on loopback unless told otherwise). The OpenAPI document says which.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from starlette.responses import Response

from orchestrator.api.endpoints import Endpoint

if TYPE_CHECKING:
    from starlette.requests import Request

    from orchestrator.api.context import ApiContext
    from orchestrator.config import Settings

METRICS_PATH = "/metrics"


async def metrics(api: ApiContext, request: Request) -> Response:
    """The text format every Prometheus reads (0.0.4): legacy names, which ours all are."""
    return Response(api.metrics.exposition(), media_type=CONTENT_TYPE_PLAIN_0_0_4)


ENDPOINT = Endpoint(
    method="GET",
    path=METRICS_PATH,
    handler=metrics,
    auth="read",
    summary="Metrics in Prometheus's text format (no token with `metrics_public = true`)",
    tag="daemon",
    response=CONTENT_TYPE_PLAIN_0_0_4.split(";")[0],
)


def as_configured(endpoint: Endpoint, settings: Settings) -> Endpoint:
    """The endpoint as `settings` want it: `/metrics` is public with `metrics_public`."""
    if endpoint is ENDPOINT and settings.metrics_public:
        return replace(endpoint, auth="public")
    return endpoint
