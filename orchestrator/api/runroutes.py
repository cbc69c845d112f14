"""Runs: list with filters and paging, show, trigger (with an idempotency key), cancel."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.responses import JSONResponse

from orchestrator.api.endpoints import Endpoint, Param, page_limit
from orchestrator.api.inputs import (
    MAX_TEXT,
    json_object,
    object_field,
    optional_header,
    optional_text,
    path_text,
    query_choice,
)
from orchestrator.api.views import run_json, task_instance_json
from orchestrator.errors import ApiError, DuplicateRunError, RunNotFoundError
from orchestrator.state import RunState

if TYPE_CHECKING:
    from starlette.requests import Request

    from orchestrator.api.context import ApiContext
    from orchestrator.store.records import RunRecord

_STATES = tuple(state.value for state in RunState)
_LIMIT = page_limit("Runs")


async def list_runs(api: ApiContext, request: Request) -> dict[str, Any]:
    """Newest first; `next` is the `before` that gives the following page (None at the end)."""
    limit = _LIMIT.read_int(request)
    state = query_choice(request, "state", _STATES)
    runs = await api.store.list_runs(
        dag_id=request.query_params.get("dag_id") or None,
        state=RunState(state) if state else None,
        limit=limit + 1,
        before=request.query_params.get("before") or None,
    )
    page = runs[:limit]
    following = page[-1].run_id if len(runs) > limit else None
    return {"runs": [run_json(run) for run in page], "next": following}


async def show_run(api: ApiContext, request: Request) -> dict[str, Any]:
    run = await find_run(api, path_text(request, "run_id"))
    instances = await api.store.list_task_instances(run.run_id)
    return {"run": run_json(run), "task_instances": [task_instance_json(ti) for ti in instances]}


async def trigger_run(api: ApiContext, request: Request) -> JSONResponse:
    """Start a run; a repeated idempotency key answers with the run it started the first time."""
    dag_id = path_text(request, "dag_id")
    api.engine.dagbag.get(dag_id)  # 404 for an unknown DAG before anything else
    body = await json_object(api, request)
    conf = object_field(body, "conf")
    key = optional_text(body, "idempotency_key") or optional_header(request, "Idempotency-Key")
    refuse_while_stopping(api)
    api.limit(f"dag:{dag_id}", api.settings.dag_trigger_rate, f"starting runs of {dag_id!r}")
    try:
        run_id = await api.engine.trigger(dag_id, conf, dedup_key=key)
    except DuplicateRunError as error:
        return await _existing(api, error.existing_run_id)
    run = await find_run(api, run_id)
    return JSONResponse({"run": run_json(run), "created": True}, status_code=201)


async def cancel_run(api: ApiContext, request: Request) -> JSONResponse:
    run = await find_run(api, path_text(request, "run_id"))
    if run.state.finished:
        raise ApiError(
            f"run {run.run_id} already ended ({run.state}); nothing to cancel",
            status=409,
            code="run_finished",
        )
    await api.engine.cancel(run.run_id)
    return JSONResponse({"run_id": run.run_id, "cancelling": True}, status_code=202)


async def find_run(api: ApiContext, run_id: str) -> RunRecord:
    run = await api.store.get_run(run_id)
    if run is None:
        raise RunNotFoundError(f"there is no run with id {run_id!r}", run_id=run_id)
    return run


def refuse_while_stopping(api: ApiContext) -> None:
    if api.stopping:
        raise ApiError(
            "the daemon is shutting down and starts no runs; send this again once it is back",
            status=503,
            code="stopping",
        )


async def _existing(api: ApiContext, run_id: str) -> JSONResponse:
    run = await find_run(api, run_id)
    return JSONResponse({"run": run_json(run), "created": False}, status_code=200)


_TRIGGER_BODY = {
    "type": "object",
    "properties": {
        "conf": {"type": "object", "description": "What the run's tasks read as context.conf"},
        "idempotency_key": {
            "type": "string",
            "maxLength": MAX_TEXT,
            "description": "At most one run per key and DAG; also read from Idempotency-Key",
        },
    },
    "additionalProperties": False,
}

ENDPOINTS = (
    Endpoint(
        method="GET",
        path="/api/v1/runs",
        handler=list_runs,
        auth="read",
        summary="List runs, newest first, by DAG and state, a page at a time",
        tag="runs",
        query=(
            Param(name="dag_id", description="Only this DAG's runs"),
            Param(name="state", description="Only runs in this state", enum=_STATES),
            _LIMIT,
            Param(name="before", description="The `next` of the previous page"),
        ),
    ),
    Endpoint(
        method="GET",
        path="/api/v1/runs/{run_id}",
        handler=show_run,
        auth="read",
        summary="Show a run and its task instances",
        tag="runs",
    ),
    Endpoint(
        method="POST",
        path="/api/v1/dags/{dag_id}/runs",
        handler=trigger_run,
        auth="trigger",
        summary="Start a run of a DAG (committed before the answer)",
        tag="runs",
        body=_TRIGGER_BODY,
        status=201,
    ),
    Endpoint(
        method="POST",
        path="/api/v1/runs/{run_id}/cancel",
        handler=cancel_run,
        auth="trigger",
        summary="Cancel a run: running tasks are killed, the others marked cancelled",
        tag="runs",
        status=202,
    ),
)
