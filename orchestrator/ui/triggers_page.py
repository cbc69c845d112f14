"""The triggers page: everything the daemon waits on, what it watches, since when, until when.

Two kinds of waiting: deferred task instances (a sensor, a deferrable operator) each hosted
as one trigger until it fires or times out, and DAGs' run triggers (`run_on=`), which start a
run per event and never stop. For each: its kind, what it watches (path, bucket and prefix,
URL, moment), since when, its timeout, its last error, and how many events it fired.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from orchestrator.ui.pages import Page

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response

    from orchestrator.store.records import RunSourceRecord, TriggerRecord
    from orchestrator.ui.context import UiContext
    from orchestrator.ui.sessions import Session

#: The arguments that say what a trigger watches, in the order they are shown.
_WATCHED = (
    "path",
    "paths",
    "directory",
    "pattern",
    "bucket",
    "prefix",
    "key",
    "url",
    "moment",
    "target",
    "at",
    "dag_id",
    "asset",
    "uri",
)
_VALUE_CHARS = 160


def kind_of(classpath: str) -> str:
    """`triggers.file.FileTrigger` -> `FileTrigger`."""
    return classpath.rsplit(".", 1)[-1]


def watched(kwargs: dict[str, Any]) -> list[tuple[str, str]]:
    """The arguments that say what is watched (the rest are tuning), as short text."""
    shown = [(name, kwargs[name]) for name in _WATCHED if name in kwargs]
    if not shown:  # an unknown trigger: its first few arguments, whatever they are
        shown = list(kwargs.items())[:4]
    return [(name, _short(value)) for name, value in shown]


def _short(value: Any) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= _VALUE_CHARS else text[: _VALUE_CHARS - 1] + "…"


@dataclass(frozen=True, kw_only=True)
class Deferred:
    record: TriggerRecord
    kind: str
    watches: list[tuple[str, str]]


@dataclass(frozen=True, kw_only=True)
class Source:
    record: RunSourceRecord
    kind: str
    watches: list[tuple[str, str]]
    events: int
    last_event_at: float | None


async def triggers(ui: UiContext, request: Request, session: Session | None) -> Response:
    reads = await ui.reads()
    counts = await reads.event_counts_by_source()
    deferred = [
        Deferred(record=t, kind=kind_of(t.classpath), watches=watched(t.kwargs))
        for t in await reads.list_triggers()
    ]
    sources = []
    for source in await reads.list_run_sources():
        count, last = counts.get((source.dag_id, source.source), (0, None))
        sources.append(
            Source(
                record=source,
                kind=kind_of(source.classpath),
                watches=watched(source.kwargs),
                events=count,
                last_event_at=last,
            )
        )
    statistics = ui.engine.triggerer.statistics()
    return ui.render(
        request,
        session,
        "triggers.html",
        deferred=deferred,
        sources=sources,
        statistics=statistics,
        capacity=ui.settings.triggerer_capacity,
    )


PAGES = (
    Page(
        method="GET",
        path="/triggers",
        handler=triggers,
        auth="read",
        summary="What waits: deferred sensors and run triggers, what they watch, since when",
    ),
)
