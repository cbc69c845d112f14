"""The events page: each event, its dedup key, and the one run it started (lineage).

Files landed, S3 objects, webhook deliveries, assets updated, DAGs finished: each event is
recorded once per DAG (its dedup key), and links to the run it started, or says it waits for
its batch window. `?run_id=` shows the events that started one run; `?dag_id=` one DAG's.
Newest first, 50 a page, keyset-paged by event id.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from orchestrator.api.inputs import query_int
from orchestrator.ui.pages import Page

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response

    from orchestrator.ui.context import UiContext
    from orchestrator.ui.sessions import Session

PAGE_SIZE = 50


async def events(ui: UiContext, request: Request, session: Session | None) -> Response:
    dag_id = request.query_params.get("dag_id") or None
    run_id = request.query_params.get("run_id") or None
    before = query_int(request, "before", default=0, low=0, high=2**62) or None
    reads = await ui.reads()
    found = await reads.list_events(
        dag_id=dag_id, run_id=run_id, limit=PAGE_SIZE + 1, before=before
    )
    page = found[:PAGE_SIZE]
    following = page[-1].event_id if len(found) > PAGE_SIZE else None
    return ui.render(
        request,
        session,
        "events.html",
        events=page,
        following=following,
        dag_id=dag_id,
        run_id=run_id,
        before=before,
    )


PAGES = (
    Page(
        method="GET",
        path="/events",
        handler=events,
        auth="read",
        summary="Events, newest first, each with the run it started",
    ),
)
