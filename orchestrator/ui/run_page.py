"""The run page: one run's header, its tasks (live), a Gantt chart of them, and a try's log.

```
GET /runs/R                          header, task table and timeline (refresh on sse:change)
GET /runs/R?task=T&map_index=i&try=n the same, and that try's log below (run_log.py), with
                                     an Airflow task's doc_md and that try's rendered fields
```

The live region (`#live`) fetches `/runs/R` again on each change and keeps only itself, so
states turn green without a reload; the log panel sits outside it, because a swap would throw
away the text the stream appended.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import anyio

from orchestrator.airflow_compat.rendered import read_rendered
from orchestrator.api.runroutes import find_run
from orchestrator.state import TaskState
from orchestrator.ui import svg
from orchestrator.ui.formats import path_part
from orchestrator.ui.pages import Page
from orchestrator.ui.run_log import LogPanel, log_panel, log_query
from orchestrator.ui.stream import log_path_within
from orchestrator.ui.timeline import Timeline, TimelineEntry, layout_timeline

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response

    from orchestrator.store.records import (
        EventRecord,
        RunRecord,
        TaskInstanceRecord,
        TriggerRecord,
    )
    from orchestrator.ui.context import UiContext
    from orchestrator.ui.sessions import Session

TIMELINE_WIDTH = 760.0  # px of the bars' area; labels get their own column to the left
TIMELINE_LABEL_WIDTH = 200.0
TIMELINE_ROW_HEIGHT = 22.0
TIMELINE_AXIS_HEIGHT = 24.0


@dataclass(frozen=True, kw_only=True)
class WaitingOn:
    """What a deferred task waits on: its stored trigger, in a line."""

    name: str  # the trigger class's own name: `FileTrigger`
    classpath: str
    arguments: str  # `directory="/in", pattern="*.csv"`
    since: float
    timeout_at: float | None


@dataclass(frozen=True, kw_only=True)
class TaskRow:
    """One task instance of the run, with what the page shows beside it."""

    ti: TaskInstanceRecord
    label: str  # `extract`, or `extract[3]` for an element of an expanded task
    result: str | None  # JSON text, as stored
    waiting: WaitingOn | None
    log_url: str | None  # None until it has had a try

    @property
    def duration(self) -> float | None:
        ti = self.ti
        if ti.started_at is None or ti.ended_at is None:
            return None
        return ti.ended_at - ti.started_at


async def run_page(ui: UiContext, request: Request, session: Session | None) -> Response:
    run = await find_run(ui.api, request.path_params["run_id"])
    instances = await ui.store.list_task_instances(run.run_id)
    rows = await task_rows(ui, run, instances)
    log = await log_panel(ui, request, run.run_id)
    return ui.render(
        request,
        session,
        "run.html",
        run=run,
        rows=rows,
        started_by=await started_by(ui, run),
        run_duration=run_duration(run, ui.clock.now()),
        timeline=timeline_of(rows, ui.clock.now()),
        chart=CHART,
        number=svg.number,
        state_class=svg.state_class,
        log=log,
        stream_url=log.stream_url if log else "/ui/stream",
        task_doc=task_doc(ui, run, log),
        rendered=await rendered_fields(ui, run, log),
    )


def task_doc(ui: UiContext, run: RunRecord, log: LogPanel | None) -> str | None:
    """The selected task's `doc_md` (Airflow tasks), shown as text."""
    if log is None:
        return None
    dag = ui.engine.dagbag.dags.get(run.dag_id)
    task = dag.tasks.get(log.task_id) if dag is not None else None
    doc = getattr(task, "doc_md", None)
    return doc if isinstance(doc, str) and doc.strip() else None


async def rendered_fields(
    ui: UiContext, run: RunRecord, log: LogPanel | None
) -> list[tuple[str, str]] | None:
    """The selected try's rendered template fields, as (name, text); None if it recorded none."""
    if log is None or log.try_number < 1:
        return None
    tries = await ui.store.list_tries(run.run_id, log.task_id, log.map_index)
    chosen = [t for t in tries if t.try_number == log.try_number]
    path = log_path_within(ui, chosen[0]) if chosen else None
    if path is None:
        return None
    fields = await anyio.to_thread.run_sync(read_rendered, Path(path))
    if fields is None:
        return None
    return [
        (name, value if isinstance(value, str) else json.dumps(value, indent=2, ensure_ascii=False))
        for name, value in fields.items()
    ]


async def task_rows(
    ui: UiContext, run: RunRecord, instances: list[TaskInstanceRecord]
) -> list[TaskRow]:
    results = await ui.store.get_results(run.run_id)
    triggers = {t.key: t for t in await ui.store.list_triggers() if t.run_id == run.run_id}
    return [
        TaskRow(
            ti=ti,
            label=ti.task_id if ti.map_index < 0 else f"{ti.task_id}[{ti.map_index}]",
            result=results.get((ti.task_id, ti.map_index)),
            waiting=_waiting_on(triggers.get(ti.key)) if ti.state is TaskState.DEFERRED else None,
            log_url=_log_url(ti),
        )
        for ti in instances
    ]


def _waiting_on(trigger: TriggerRecord | None) -> WaitingOn | None:
    if trigger is None:
        return None
    arguments = ", ".join(
        f"{name}={json.dumps(value, default=str, ensure_ascii=False)}"
        for name, value in sorted(trigger.kwargs.items())
    )
    return WaitingOn(
        name=trigger.classpath.rpartition(".")[2],
        classpath=trigger.classpath,
        arguments=arguments,
        since=trigger.created_at,
        timeout_at=trigger.timeout_at,
    )


def _log_url(ti: TaskInstanceRecord) -> str | None:
    if ti.try_number < 1:
        return None
    return f"/runs/{path_part(ti.run_id)}?{log_query(ti.task_id, ti.map_index, ti.try_number)}#log"


async def started_by(ui: UiContext, run: RunRecord) -> EventRecord | None:
    """The event that started the run, for runs an event started."""
    events = await ui.store.list_events(run_id=run.run_id, limit=1)
    return events[0] if events else None


def run_duration(run: RunRecord, now: float) -> float | None:
    if run.started_at is None:
        return None
    return (run.ended_at if run.ended_at is not None else now) - run.started_at


@dataclass(frozen=True)
class Chart:
    """The timeline's frame in px, for the template (the bars come from `layout_timeline`)."""

    label_width: float = TIMELINE_LABEL_WIDTH
    row_height: float = TIMELINE_ROW_HEIGHT
    axis_height: float = TIMELINE_AXIS_HEIGHT
    bar_height: float = TIMELINE_ROW_HEIGHT - 8
    tick_top: float = TIMELINE_AXIS_HEIGHT - 6
    tick_label_y: float = TIMELINE_AXIS_HEIGHT - 10

    def height(self, timeline: Timeline) -> str:
        return svg.number(self.axis_height + self.row_height * len(timeline.rows) + 4)

    def width(self, timeline: Timeline) -> str:
        return svg.number(self.label_width + timeline.width + 8)

    def bar_y(self, index: int) -> str:
        return svg.number(self.axis_height + self.row_height * index + 4)

    def label_y(self, index: int) -> str:
        return svg.number(self.axis_height + self.row_height * (index + 1) - 7)

    def x(self, offset: float) -> str:
        return svg.number(self.label_width + offset)


CHART = Chart()


def timeline_of(rows: list[TaskRow], now: float) -> Timeline:
    entries = (
        TimelineEntry(
            row.label,
            row.ti.state.value,
            queued_at=row.ti.queued_at,
            started_at=row.ti.started_at,
            ended_at=row.ti.ended_at,
        )
        for row in rows
    )
    return layout_timeline(entries, now, TIMELINE_WIDTH)


PAGES = (
    Page(
        method="GET",
        path="/runs/{run_id}",
        handler=run_page,
        auth="read",
        summary="A run: its tasks live, their timeline, the event that started it, a try's log",
    ),
)
