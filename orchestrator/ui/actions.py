"""The buttons: trigger, pause and unpause, cancel a run, clear a task.

Each goes through the same engine call as the API, under the same scope (trigger to start
runs, admin for the rest), the same rate limit and the same refusals, and then sends the
browser on with a 303 (so a reload does not post again). The trigger form carries a key made
when it was rendered, used as the run's idempotency key: a double click starts one run.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.responses import RedirectResponse, Response

from orchestrator.api.runroutes import find_run, refuse_while_stopping
from orchestrator.errors import ApiError, DuplicateRunError
from orchestrator.ui.formats import path_part
from orchestrator.ui.login import safe_next
from orchestrator.ui.pages import Page
from orchestrator.ui.trigger_form import conf_from_form

if TYPE_CHECKING:
    from starlette.requests import Request

    from orchestrator.ui.context import UiContext
    from orchestrator.ui.sessions import Session

_KEY_CHARS = 200


async def trigger(ui: UiContext, request: Request, session: Session | None) -> Response:
    dag = ui.engine.dagbag.get(request.path_params["dag_id"])
    form = await ui.read_form(request)
    conf = conf_from_form(dag.params, form)
    key = form.get("idempotency_key", "")[:_KEY_CHARS] or None
    refuse_while_stopping(ui.api)
    ui.api.limit(
        f"dag:{dag.dag_id}", ui.settings.dag_trigger_rate, f"starting runs of {dag.dag_id!r}"
    )
    try:
        run_id = await ui.engine.trigger(dag.dag_id, conf, dedup_key=key)
    except DuplicateRunError as error:
        run_id = error.existing_run_id
    return _go(f"/runs/{path_part(run_id)}")


async def pause(ui: UiContext, request: Request, session: Session | None) -> Response:
    return await _set_paused(ui, request, True)


async def unpause(ui: UiContext, request: Request, session: Session | None) -> Response:
    return await _set_paused(ui, request, False)


async def _set_paused(ui: UiContext, request: Request, paused: bool) -> Response:
    dag_id = request.path_params["dag_id"]
    await ui.engine.set_paused(dag_id, paused)
    form = await ui.read_form(request)
    return _go(safe_next(form.get("next")) if form.get("next") else f"/dags/{path_part(dag_id)}")


async def cancel(ui: UiContext, request: Request, session: Session | None) -> Response:
    run = await find_run(ui.api, request.path_params["run_id"])
    if run.state.finished:
        raise ApiError(
            f"run {run.run_id} already ended ({run.state}); nothing to cancel", status=409
        )
    await ui.engine.cancel(run.run_id)
    return _go(f"/runs/{path_part(run.run_id)}")


async def clear(ui: UiContext, request: Request, session: Session | None) -> Response:
    run = await find_run(ui.api, request.path_params["run_id"])
    form = await ui.read_form(request)
    downstream = form.get("downstream") is not None
    await ui.engine.clear(run.run_id, [request.path_params["task_id"]], downstream=downstream)
    return _go(f"/runs/{path_part(run.run_id)}")


def _go(target: str) -> Response:
    return RedirectResponse(target, status_code=303)


PAGES = (
    Page(
        method="POST",
        path="/dags/{dag_id}/trigger",
        handler=trigger,
        auth="trigger",
        summary="Start a run of the DAG with the form's conf",
    ),
    Page(
        method="POST",
        path="/dags/{dag_id}/pause",
        handler=pause,
        auth="admin",
        summary="Pause the DAG",
    ),
    Page(
        method="POST",
        path="/dags/{dag_id}/unpause",
        handler=unpause,
        auth="admin",
        summary="Unpause the DAG",
    ),
    Page(
        method="POST",
        path="/runs/{run_id}/cancel",
        handler=cancel,
        auth="admin",
        summary="Cancel a run",
    ),
    Page(
        method="POST",
        path="/runs/{run_id}/tasks/{task_id}/clear",
        handler=clear,
        auth="admin",
        summary="Clear a task instance (and, when asked, what is downstream) to run it again",
    ),
)
