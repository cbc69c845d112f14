"""A page's stream starts with a change when something changed after the page was rendered.

A page is rendered, then its browser opens the stream: a run that ends in between would
otherwise leave the page showing it running until some other change came along.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import anyio
from uikit import events_of, ui_serving

from orchestrator import DAG, task
from orchestrator.config import Settings

_STREAM_URL = re.compile(r'sse-connect="([^"]*)"')


def quick() -> DAG:
    with DAG("quick") as dag:

        @task(in_process=True)
        def work() -> int:
            return 1

        work()
    return dag


async def test_a_stream_opened_after_a_change_the_page_missed_starts_with_a_change(
    make_settings: Callable[..., Settings],
) -> None:
    async with ui_serving(make_settings(), quick()) as served:
        page = await served.browser.get("/dags")
        found = _STREAM_URL.search(page.text)
        assert found is not None
        url = found.group(1).replace("&amp;", "&")
        assert url == f"/ui/stream?since={served.engine.feed.published}"
        await served.engine.wait(await served.engine.trigger("quick"))  # after the render
        with anyio.fail_after(10):
            async with served.browser.stream("GET", url) as response:
                first = await anext(aiter(events_of(response)))
    assert first.kind == "change"


async def test_a_page_rendered_after_the_last_change_names_the_feed_as_it_is(
    make_settings: Callable[..., Settings],
) -> None:
    async with ui_serving(make_settings(), quick()) as served:
        await served.engine.wait(await served.engine.trigger("quick"))
        published = served.engine.feed.published
        page = await served.browser.get("/")
    assert published > 0
    assert f'sse-connect="/ui/stream?since={published}"' in page.text


async def test_a_change_committed_while_the_page_was_being_read_makes_it_stale(
    make_settings: Callable[..., Settings],
) -> None:
    """The count is taken when the request arrives, not when the page is rendered: a change
    published between the store reads and the rendering must still refresh the page."""
    from starlette.requests import Request
    from starlette.responses import Response

    from orchestrator.changes import RunChanged
    from orchestrator.state import RunState
    from orchestrator.ui.pages import Page, bind
    from orchestrator.ui.sessions import Session

    async with ui_serving(make_settings(), quick()) as served:
        ui = served.ui
        before = ui.engine.feed.published

        async def reads_then_a_change_lands(
            ui_: object, request: Request, session: Session | None
        ) -> Response:
            change = RunChanged(run_id="r", dag_id="quick", state=RunState.RUNNING, at=0.0)
            ui.engine.feed.publish([change])  # committed after the page read the store
            return ui.render(request, session, "error.html", code=200, message="read")

        page = Page(
            method="GET", path="/x", handler=reads_then_a_change_lands, auth="read", summary="x"
        )
        handle = bind(page, ui)
        cookie = served.browser.cookies["orch_session"]
        scope = {
            "type": "http",
            "method": "GET",
            "path": "/x",
            "headers": [(b"cookie", f"orch_session={cookie}".encode())],
            "query_string": b"",
        }
        answer = await handle(Request(scope))
        assert ui.engine.feed.published == before + 1
        assert f"/ui/stream?since={before}".encode() in bytes(answer.body)
