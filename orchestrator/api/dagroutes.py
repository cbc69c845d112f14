"""DAGs: list, show, pause and unpause, and the files that failed to import."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from orchestrator.api.endpoints import Endpoint
from orchestrator.api.inputs import path_text
from orchestrator.api.views import dag_detail_json, dag_json

if TYPE_CHECKING:
    from starlette.requests import Request

    from orchestrator.api.context import ApiContext


async def list_dags(api: ApiContext, request: Request) -> dict[str, Any]:
    bag, paused = api.engine.dagbag, api.engine.starter.paused
    dags = [
        dag_json(dag, paused=dag_id in paused, file=bag.files.get(dag_id))
        for dag_id, dag in sorted(bag.dags.items())
    ]
    return {"dags": dags, "import_errors": len(bag.errors)}


async def show_dag(api: ApiContext, request: Request) -> dict[str, Any]:
    bag = api.engine.dagbag
    dag = bag.get(path_text(request, "dag_id"))
    paused = dag.dag_id in api.engine.starter.paused
    return dag_detail_json(dag, paused=paused, file=bag.files.get(dag.dag_id))


async def pause_dag(api: ApiContext, request: Request) -> dict[str, Any]:
    dag_id = path_text(request, "dag_id")
    await api.engine.set_paused(dag_id, True)
    return {"dag_id": dag_id, "paused": True}


async def unpause_dag(api: ApiContext, request: Request) -> dict[str, Any]:
    dag_id = path_text(request, "dag_id")
    await api.engine.set_paused(dag_id, False)
    return {"dag_id": dag_id, "paused": False}


async def list_import_errors(api: ApiContext, request: Request) -> dict[str, Any]:
    errors = [
        {"file": error.file, "line": error.line, "message": error.message}
        for error in api.engine.dagbag.errors
    ]
    return {"import_errors": errors}


ENDPOINTS = (
    Endpoint(
        method="GET",
        path="/api/v1/dags",
        handler=list_dags,
        auth="read",
        summary="List the DAGs, with their schedule, run triggers and whether they are paused",
        tag="dags",
    ),
    Endpoint(
        method="GET",
        path="/api/v1/dags/{dag_id}",
        handler=show_dag,
        auth="read",
        summary="Show one DAG and its tasks",
        tag="dags",
    ),
    Endpoint(
        method="POST",
        path="/api/v1/dags/{dag_id}/pause",
        handler=pause_dag,
        auth="admin",
        summary="Pause a DAG: no new run starts; running runs go on",
        tag="dags",
    ),
    Endpoint(
        method="POST",
        path="/api/v1/dags/{dag_id}/unpause",
        handler=unpause_dag,
        auth="admin",
        summary="Unpause a DAG: its queued runs start",
        tag="dags",
    ),
    Endpoint(
        method="GET",
        path="/api/v1/import-errors",
        handler=list_import_errors,
        auth="read",
        summary="DAG files that failed to import, with file and line",
        tag="dags",
    ),
)
