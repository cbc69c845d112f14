"""Live pages: one server-sent-events stream per open page, from the engine's change feed.

```
GET /ui/stream                       event: change   (something committed; refresh)
GET /ui/stream?run_id=R&task_id=T    ... and event: log, id: <byte offset>, data: new log text
GET /ui/stream?since=N               ... and a change at once if the feed moved on since N
```

A page is rendered, then opens its stream: a change committed in between would be missed,
and a page showing a task running could wait for ever for the next change. So every page
names the feed's count of changes it was rendered at (`since`), and a stream that finds the
count moved on by the time it subscribed starts with a change.

The page's live regions listen for `sse:change` (htmx's SSE extension) and fetch themselves
again, at most once a `REFRESH_SECONDS`: a busy daemon costs an open page one refresh a
second, not one per change. The feed is drained into one "dirty" flag as fast as it comes,
so a slow or stalled browser holds no queue of changes in the daemon: a page left open for a
day costs what it cost in its first minute.

A task log is followed from a byte offset: each `log` event's id is the offset after it, so a
browser that reconnects sends `Last-Event-ID` and resumes exactly there (an `offset` query
parameter does the same for a page that opens a new stream). Only files under the state
directory's `logs/` are read. One client (a session) may hold `ui_max_streams_per_client`
streams at once; one more gets a 429 that says so.
"""

from __future__ import annotations

import html
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

import anyio
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.responses import Response

from orchestrator.api.inputs import query_int
from orchestrator.ui.pages import Page

if TYPE_CHECKING:
    from starlette.requests import Request

    from orchestrator.store.records import TryRecord
    from orchestrator.ui.context import UiContext
    from orchestrator.ui.sessions import Session

REFRESH_SECONDS = 1.0  # a page's live regions refresh at most this often
LOG_POLL_SECONDS = 0.25  # a running try's log is looked at this often
LOG_CHUNK_BYTES = 64 * 1024  # the most one `log` event carries
PING_SECONDS = 15  # a comment line this often keeps proxies from closing an idle stream


async def stream(ui: UiContext, request: Request, session: Session | None) -> Response:
    assert session is not None  # the page needs `read`
    key = session.session_id
    limit = ui.settings.ui_max_streams_per_client
    if ui.streams.get(key, 0) >= limit:
        return Response(
            f"this session already has {limit} live pages open (ui_max_streams_per_client); "
            "close some tabs, or raise the setting\n",
            status_code=429,
            media_type="text/plain",
            headers={"Retry-After": "5"},
        )
    follow = await _log_to_follow(ui, request)
    since = query_int(request, "since", default=-1, low=-1, high=2**62)
    ui.streams[key] = ui.streams.get(key, 0) + 1

    async def events() -> AsyncIterator[ServerSentEvent]:
        try:
            async for event in _events(ui, follow, since):
                yield event
        finally:
            _release(ui, key)

    return EventSourceResponse(events(), ping=PING_SECONDS, headers={"Cache-Control": "no-store"})


def stream_since(url: str, published: int) -> str:
    """`url` (a stream's) naming the count of changes the page was rendered at."""
    return f"{url}{'&' if '?' in url else '?'}since={published}"


def _release(ui: UiContext, key: str) -> None:
    left = ui.streams.get(key, 0) - 1
    if left > 0:
        ui.streams[key] = left
    else:
        ui.streams.pop(key, None)


class _Follow:
    """A try's log to follow from `offset`, while the try runs (and to its end after)."""

    def __init__(self, ui: UiContext, attempt: TryRecord, path: Path, offset: int) -> None:
        self.ui, self.attempt, self.path, self.offset = ui, attempt, path, offset
        self.told_end = False  # `log-end` is sent once, also for a try that ended before

    async def still_running(self) -> bool:
        attempt = self.attempt
        reads = await self.ui.reads()
        tries = await reads.list_tries(attempt.run_id, attempt.task_id, attempt.map_index)
        mine = [t for t in tries if t.try_number == attempt.try_number]
        return bool(mine) and mine[0].ended_at is None

    async def read_new(self) -> str | None:
        """The text written since `offset` (at most a chunk), or None when nothing is new.

        A reader far behind (a reconnect after a long sleep, a log growing faster than it is
        read) skips to the last `LOG_CHUNK_BYTES` and is told how much it skipped: a live view
        shows what happens now; the whole log is the download link's job.
        """
        start, chunk = await anyio.to_thread.run_sync(_read_from, self.path, self.offset)
        if not chunk:
            return None
        skipped = start - self.offset if start > self.offset else 0
        self.offset = start + len(chunk)
        text = chunk.decode("utf-8", "replace")
        return (
            f"\n… {skipped} bytes skipped; download the log for all of it …\n{text}"
            if skipped
            else text
        )


async def _log_to_follow(ui: UiContext, request: Request) -> _Follow | None:
    run_id, task_id = request.query_params.get("run_id"), request.query_params.get("task_id")
    if not run_id or not task_id:
        return None
    map_index = query_int(request, "map_index", default=-1, low=-1, high=10_000_000)
    number = query_int(request, "try", default=0, low=0, high=1_000_000)
    tries = await ui.store.list_tries(run_id, task_id, map_index)
    chosen = [t for t in tries if t.try_number == number] if number else tries[-1:]
    if not chosen:
        return None
    path = log_path_within(ui, chosen[0])
    if path is None:
        return None
    resume = request.headers.get("last-event-id", "")
    offset = (
        int(resume)
        if resume.isdigit()
        else query_int(request, "offset", default=0, low=0, high=2**62)
    )
    return _Follow(ui, chosen[0], path, offset)


def log_path_within(ui: UiContext, attempt: TryRecord) -> Path | None:
    """The try's log file if it lies under the state directory's logs folder; else None."""
    logs = ui.settings.logs_dir.resolve()
    path = Path(attempt.log_path).resolve()
    return path if path.is_relative_to(logs) else None


async def _events(
    ui: UiContext, follow: _Follow | None, since: int
) -> AsyncIterator[ServerSentEvent]:
    dirty = anyio.Event()
    async with ui.engine.subscribe() as changes, anyio.create_task_group() as group:
        if 0 <= since != ui.engine.feed.published:  # it changed while the page was on its way
            dirty.set()

        async def drain() -> None:
            nonlocal dirty
            async for _ in changes:
                dirty.set()

        group.start_soon(drain)
        try:
            while True:
                if follow is not None:
                    async for event in _log_events(follow):
                        yield event
                    if follow.told_end:  # all of it was sent: from now on, changes only
                        follow = None
                with anyio.move_on_after(LOG_POLL_SECONDS if follow else None):
                    await dirty.wait()
                if dirty.is_set():
                    dirty = anyio.Event()
                    yield ServerSentEvent(data="changed", event="change")
                    await anyio.sleep(REFRESH_SECONDS if follow is None else LOG_POLL_SECONDS)
        finally:
            group.cancel_scope.cancel()


async def _log_events(follow: _Follow) -> AsyncIterator[ServerSentEvent]:
    while (text := await follow.read_new()) is not None:
        yield ServerSentEvent(data=html.escape(text), event="log", id=str(follow.offset))
    if follow.told_end:
        return
    if follow.attempt.ended_at is not None or not await follow.still_running():
        # The try ended (maybe long before the page opened): what it wrote last was read
        # above; say so once, so the page can stop showing it as live.
        follow.told_end = True
        yield ServerSentEvent(data="ended", event="log-end")


def _read_from(path: Path, offset: int) -> tuple[int, bytes]:
    """(where it read from, the next chunk): from `offset`, or near the end when far behind."""
    try:
        with path.open("rb") as file:
            end = os.fstat(file.fileno()).st_size
            if end < offset:  # the log was cut (capped) under us: start again from its tail
                offset = max(0, end - LOG_CHUNK_BYTES)
            elif end - offset > 16 * LOG_CHUNK_BYTES:
                offset = end - LOG_CHUNK_BYTES
            file.seek(offset)
            return offset, file.read(LOG_CHUNK_BYTES)
    except OSError:
        return offset, b""


PAGES = (
    Page(
        method="GET",
        path="/ui/stream",
        handler=stream,
        auth="read",
        summary="Server-sent events for an open page: changes, and a try's log as it grows",
    ),
)
