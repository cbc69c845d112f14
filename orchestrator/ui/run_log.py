"""A try's log on the run page: its last 64 KiB, followed live, and the whole of it as a file.

```
GET /runs/R?task=T&map_index=-1&try=2#log    the panel: the tail, then the stream goes on
GET /runs/R/tasks/T/log?map_index=-1&try=2   the whole log, as a download
```

The panel renders the tail as text (autoescaped) and hands the page a stream URL whose
`offset` is the byte right after what it rendered, so the stream (stream.py) carries on with
exactly the bytes that follow: nothing is shown twice, nothing is missed. Only files under the
state directory's `logs/` are ever read: a try record pointing elsewhere (a damaged or forged
row) gets a note, never the file.
"""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlencode

import anyio
from starlette.responses import FileResponse, Response, StreamingResponse

from orchestrator.api.inputs import query_int
from orchestrator.api.runroutes import find_run
from orchestrator.errors import ApiError
from orchestrator.ui.formats import path_part
from orchestrator.ui.pages import Page
from orchestrator.ui.stream import log_path_within

if TYPE_CHECKING:
    from starlette.requests import Request

    from orchestrator.store.records import TryRecord
    from orchestrator.ui.context import UiContext
    from orchestrator.ui.sessions import Session

TAIL_BYTES = 64 * 1024  # what the panel shows; the rest is the download's job
_CHUNK_BYTES = 64 * 1024
_UNSAFE_IN_FILENAME = re.compile(r"[^A-Za-z0-9._-]+")
LOG_MEDIA_TYPE = "text/plain; charset=utf-8"


@dataclass(frozen=True, kw_only=True)
class LogTail:
    """The end of a log file: `text` is the bytes from `start` to `end` (the size when read)."""

    text: str
    start: int
    end: int


@dataclass(frozen=True, kw_only=True)
class LogPanel:
    """What the page shows of one try's log; `problem` says why there is no text instead."""

    task_id: str
    map_index: int
    try_number: int
    tries: int  # how many tries the task instance has had
    running: bool = False
    tail: LogTail | None = None
    problem: str | None = None
    download_url: str = ""
    stream_url: str = "/ui/stream"


def log_query(task_id: str, map_index: int, try_number: int) -> str:
    """The query string that names one try (values URL-encoded)."""
    return urlencode({"task": task_id, "map_index": map_index, "try": try_number})


async def log_panel(ui: UiContext, request: Request, run_id: str) -> LogPanel | None:
    """The panel the page's `?task=` asks for; None when it asks for none."""
    task_id = request.query_params.get("task")
    if not task_id:
        return None
    map_index = query_int(request, "map_index", default=-1, low=-1, high=10_000_000)
    number = query_int(request, "try", default=0, low=0, high=1_000_000)
    tries = await ui.store.list_tries(run_id, task_id, map_index)
    chosen = _chosen_try(tries, number)
    if chosen is None:
        what = f"try {number}" if number else "a try"
        empty = LogPanel(task_id=task_id, map_index=map_index, try_number=number, tries=0)
        return replace(empty, tries=len(tries), problem=f"This task has not had {what}.")
    panel = LogPanel(
        task_id=task_id, map_index=map_index, try_number=chosen.try_number, tries=len(tries)
    )
    path = log_path_within(ui, chosen)
    if path is None:
        return replace(panel, problem="This try's log lies outside the logs folder; not read.")
    tail = await anyio.to_thread.run_sync(read_tail, path, TAIL_BYTES)
    running = chosen.ended_at is None
    return replace(
        panel,
        running=running,
        tail=tail,
        download_url=_download_url(chosen),
        stream_url=_follow_url(chosen, tail.end) if running else "/ui/stream",
    )


def _chosen_try(tries: list[TryRecord], number: int) -> TryRecord | None:
    """Try `number`, or the last one for 0."""
    chosen = [t for t in tries if t.try_number == number] if number else tries[-1:]
    return chosen[0] if chosen else None


def _download_url(attempt: TryRecord) -> str:
    query = urlencode({"map_index": attempt.map_index, "try": attempt.try_number})
    return f"/runs/{path_part(attempt.run_id)}/tasks/{path_part(attempt.task_id)}/log?{query}"


def _follow_url(attempt: TryRecord, offset: int) -> str:
    query = urlencode(
        {
            "run_id": attempt.run_id,
            "task_id": attempt.task_id,
            "map_index": attempt.map_index,
            "try": attempt.try_number,
            "offset": offset,
        }
    )
    return f"/ui/stream?{query}"


def read_tail(path: Path, limit: int) -> LogTail:
    """The last `limit` bytes of the file as text, from a line start when one is near.

    The text is cut where the file ended when it was looked at, not where it ends by the
    time it is read, so `end` is exactly where a live stream must go on from.
    """
    try:
        with path.open("rb") as file:
            end = os.fstat(file.fileno()).st_size
            start = max(0, end - limit)
            file.seek(start)
            data = file.read(end - start)
    except FileNotFoundError:  # the try has written nothing yet
        return LogTail(text="", start=0, end=0)
    end = start + len(data)
    if start > 0:
        # Mid-line (and maybe mid-character): begin after the first newline, if there is one.
        cut = data.find(b"\n")
        if 0 <= cut < len(data) - 1:
            data, start = data[cut + 1 :], start + cut + 1
    return LogTail(text=data.decode("utf-8", "replace"), start=start, end=end)


async def download_log(ui: UiContext, request: Request, session: Session | None) -> Response:
    """The whole log of one try, streamed from disk as an attachment."""
    run = await find_run(ui.api, request.path_params["run_id"])
    task_id = request.path_params["task_id"]
    map_index = query_int(request, "map_index", default=-1, low=-1, high=10_000_000)
    number = query_int(request, "try", default=0, low=0, high=1_000_000)
    attempt = _chosen_try(await ui.store.list_tries(run.run_id, task_id, map_index), number)
    if attempt is None:
        raise ApiError(
            f"task {task_id!r} of run {run.run_id} has no try {number or ''}".rstrip(),
            status=404,
            code="try_not_found",
        )
    path = log_path_within(ui, attempt)
    if path is None:
        raise ApiError(
            "this try's log lies outside the logs folder; it is not read",
            status=403,
            code="log_outside_logs",
        )
    name = _filename(attempt)
    if not path.is_file():  # made by the try's first byte: this one has written nothing (yet)
        return Response(b"", media_type=LOG_MEDIA_TYPE, headers=_attachment(name))
    if attempt.ended_at is not None:
        return FileResponse(path, media_type=LOG_MEDIA_TYPE, filename=name)
    return _growing_file(path, name)


def _growing_file(path: Path, name: str) -> Response:
    """A running try's log as it is now: the bytes it has, and none it writes meanwhile.

    FileResponse sends the Content-Length it stat'ed and then reads to the end of the file,
    which, for a file still growing, is more than it promised (the server then breaks off).
    """
    size = path.stat().st_size

    async def chunks() -> AsyncIterator[bytes]:
        async with await anyio.open_file(path, "rb") as file:
            left = size
            while left > 0 and (chunk := await file.read(min(_CHUNK_BYTES, left))):
                left -= len(chunk)
                yield chunk

    return StreamingResponse(chunks(), media_type=LOG_MEDIA_TYPE, headers=_attachment(name))


def _attachment(name: str) -> dict[str, str]:
    return {"Content-Disposition": f'attachment; filename="{name}"'}


def _filename(attempt: TryRecord) -> str:
    """`<run>_<task>[.<i>]_try-<n>.log`, with anything unsafe in a file name as `_`."""
    task = attempt.task_id if attempt.map_index < 0 else f"{attempt.task_id}.{attempt.map_index}"
    stem = _UNSAFE_IN_FILENAME.sub("_", f"{attempt.run_id}_{task}")
    return f"{stem}_try-{attempt.try_number}.log"


PAGES = (
    Page(
        method="GET",
        path="/runs/{run_id}/tasks/{task_id}/log",
        handler=download_log,
        auth="read",
        summary="Download the whole log of one try (the last try by default)",
    ),
)
