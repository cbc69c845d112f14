"""Task instances: list a run's, show one with its tries, read a try's log, clear to re-run."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
from starlette.responses import PlainTextResponse

from orchestrator.api.endpoints import Endpoint, Param
from orchestrator.api.inputs import json_object, optional_bool, path_text
from orchestrator.api.runroutes import find_run
from orchestrator.api.views import task_instance_json, try_json
from orchestrator.errors import ApiError

if TYPE_CHECKING:
    from starlette.requests import Request

    from orchestrator.api.context import ApiContext
    from orchestrator.store.records import TaskInstanceRecord

_MAP_INDEX = Param(
    name="map_index",
    description="Which expansion of a mapped task (-1: not mapped)",
    type="integer",
    minimum=-1,
    maximum=10_000_000,
    default=-1,
)
_TRY_NUMBER = Param(
    name="try_number",
    description="Which try (default: the last)",
    type="integer",
    minimum=0,
    maximum=1_000_000,
    default=0,
)
_LOG_LIMIT = 8 * 1024 * 1024  # a log larger than this is answered with its last 8 MiB


async def list_task_instances(api: ApiContext, request: Request) -> dict[str, Any]:
    run = await find_run(api, path_text(request, "run_id"))
    instances = await api.store.list_task_instances(run.run_id)
    return {"task_instances": [task_instance_json(ti) for ti in instances]}


async def show_task_instance(api: ApiContext, request: Request) -> dict[str, Any]:
    ti = await _find_instance(api, request)
    tries = await api.store.list_tries(ti.run_id, ti.task_id, ti.map_index)
    return {"task_instance": task_instance_json(ti), "tries": [try_json(t) for t in tries]}


async def read_log(api: ApiContext, request: Request) -> PlainTextResponse:
    """The log of one try, as text (its last 8 MiB if it is larger)."""
    ti = await _find_instance(api, request)
    number = _TRY_NUMBER.read_int(request)
    tries = await api.store.list_tries(ti.run_id, ti.task_id, ti.map_index)
    chosen = [t for t in tries if t.try_number == number] if number else tries[-1:]
    if not chosen:
        raise ApiError(
            f"task {ti.task_id} of run {ti.run_id} has no try {number or ''}".strip()
            + f" (it has {len(tries)})",
            status=404,
            code="try_not_found",
        )
    text = await anyio.to_thread.run_sync(_tail, Path(chosen[0].log_path))
    return PlainTextResponse(text)


async def clear_task(api: ApiContext, request: Request) -> dict[str, Any]:
    """Run a finished task instance again, and (by default) everything downstream of it."""
    run = await find_run(api, path_text(request, "run_id"))
    body = await json_object(api, request)
    downstream = optional_bool(body, "downstream", default=True)
    task_id = path_text(request, "task_id")
    cleared = await api.engine.clear(run.run_id, [task_id], downstream=downstream)
    return {"run_id": run.run_id, "cleared": [[key[1], key[2]] for key in cleared]}


async def _find_instance(api: ApiContext, request: Request) -> TaskInstanceRecord:
    run = await find_run(api, path_text(request, "run_id"))
    task_id = path_text(request, "task_id")
    map_index = _MAP_INDEX.read_int(request)
    for ti in await api.store.list_task_instances(run.run_id):
        if ti.task_id == task_id and ti.map_index == map_index:
            return ti
    raise ApiError(
        f"run {run.run_id} has no task instance {task_id!r}"
        + (f" with map_index {map_index}" if map_index >= 0 else ""),
        status=404,
        code="task_not_found",
    )


def _tail(path: Path) -> str:
    """The file's text, or its last `_LOG_LIMIT` bytes; an empty text if it was never written."""
    try:
        with path.open("rb") as file:
            size = file.seek(0, 2)
            file.seek(max(0, size - _LOG_LIMIT))
            return file.read().decode("utf-8", errors="replace")
    except FileNotFoundError:
        return ""


ENDPOINTS = (
    Endpoint(
        method="GET",
        path="/api/v1/runs/{run_id}/tasks",
        handler=list_task_instances,
        auth="read",
        summary="List a run's task instances",
        tag="tasks",
    ),
    Endpoint(
        method="GET",
        path="/api/v1/runs/{run_id}/tasks/{task_id}",
        handler=show_task_instance,
        auth="read",
        summary="Show a task instance and its tries",
        tag="tasks",
        query=(_MAP_INDEX,),
    ),
    Endpoint(
        method="GET",
        path="/api/v1/runs/{run_id}/tasks/{task_id}/log",
        handler=read_log,
        auth="read",
        summary="Read the log of one try (the last try by default), as text",
        tag="tasks",
        query=(
            _MAP_INDEX,
            _TRY_NUMBER,
        ),
        response="text/plain",
    ),
    Endpoint(
        method="POST",
        path="/api/v1/runs/{run_id}/tasks/{task_id}/clear",
        handler=clear_task,
        auth="trigger",
        summary="Clear a finished task instance so it runs again (and its downstream tasks)",
        tag="tasks",
        body={
            "type": "object",
            "properties": {"downstream": {"type": "boolean", "default": True}},
            "additionalProperties": False,
        },
    ),
)
