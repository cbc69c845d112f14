"""Health, version, what waits (triggers) and what happened (events)."""

from __future__ import annotations

import platform
from importlib.metadata import version
from typing import TYPE_CHECKING, Any

from starlette.responses import JSONResponse

from orchestrator.api.endpoints import Endpoint, Param, page_limit
from orchestrator.api.views import event_json, run_source_json, trigger_json

if TYPE_CHECKING:
    from starlette.requests import Request

    from orchestrator.api.context import ApiContext


_LIMIT = page_limit("Events")
_BEFORE = Param(
    name="before",
    description="The `next` of the previous page",
    type="integer",
    minimum=0,
    maximum=2**62,
    default=0,
)


async def health(api: ApiContext, request: Request) -> JSONResponse:
    """Unauthenticated, for load balancers and systemd checks: 200 while the daemon serves.

    `executor` says where sync tries run and whether they can now: {"kind": "local" or
    "dask", "connected", "address", "workers", "detail"}. A Dask scheduler that is away
    leaves the status 200 (the daemon serves, and its async work goes on), with
    `connected: false` and why in `detail`.
    """
    if api.stopping:
        return JSONResponse({"status": "stopping"}, status_code=503)
    executor = api.engine.executor.describe().as_json()
    full_disk = api.engine.full_disk.reason
    if full_disk is not None:  # up, but dispatching nothing until the store can commit
        body = {"status": "disk_full", "detail": full_disk, "executor": executor}
        return JSONResponse(body, status_code=503)
    return JSONResponse({"status": "ok", "executor": executor})


async def show_version(api: ApiContext, request: Request) -> dict[str, Any]:
    return {
        "version": version("orchestrator"),
        "api": "v1",
        "python": platform.python_version(),
    }


async def list_triggers(api: ApiContext, request: Request) -> dict[str, Any]:
    """Deferred tasks' triggers and the DAGs' run triggers: what the daemon waits on."""
    deferred = await api.store.list_triggers()
    sources = await api.store.list_run_sources()
    return {
        "deferred": [trigger_json(trigger) for trigger in deferred],
        "run_triggers": [run_source_json(source) for source in sources],
    }


async def list_events(api: ApiContext, request: Request) -> dict[str, Any]:
    """Events newest first (files, objects, assets, webhook deliveries) and the run each started."""
    limit = _LIMIT.read_int(request)
    before = _BEFORE.read_int(request)
    events = await api.store.list_events(
        dag_id=request.query_params.get("dag_id") or None,
        run_id=request.query_params.get("run_id") or None,
        limit=limit + 1,
        before=before or None,
    )
    page = events[:limit]
    following = page[-1].event_id if len(events) > limit else None
    return {"events": [event_json(event) for event in page], "next": following}


ENDPOINTS = (
    Endpoint(
        method="GET",
        path="/api/v1/health",
        handler=health,
        auth="public",
        summary="Is the daemon serving? (no token needed)",
        tag="daemon",
    ),
    Endpoint(
        method="GET",
        path="/api/v1/version",
        handler=show_version,
        auth="read",
        summary="The orchestrator's version and the API's",
        tag="daemon",
    ),
    Endpoint(
        method="GET",
        path="/api/v1/triggers",
        handler=list_triggers,
        auth="read",
        summary="What the daemon waits on: deferred tasks' triggers and DAGs' run triggers",
        tag="daemon",
    ),
    Endpoint(
        method="GET",
        path="/api/v1/events",
        handler=list_events,
        auth="read",
        summary="Events, newest first, with the run each started",
        tag="daemon",
        query=(
            Param(name="dag_id", description="Only this DAG's events"),
            Param(name="run_id", description="Only the events that started this run"),
            _LIMIT,
            _BEFORE,
        ),
    ),
)
