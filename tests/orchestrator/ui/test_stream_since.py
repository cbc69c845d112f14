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
