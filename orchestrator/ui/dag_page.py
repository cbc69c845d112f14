"""A DAG's pages: the grid of its last runs x tasks, its graph, its source, its trigger form.

```
/dags/{dag_id}                 grid: the last 25 runs (`?runs=` up to 100; `?before=` pages)
/dags/{dag_id}/graph?run=R     the graph, coloured by run R (the newest by default)
/dags/{dag_id}/source          the DAG's file
/dags/{dag_id}/trigger         a form built from the DAG's params
```

The grid is one query for the runs and one for all their task instances (see
`Store.grid`), and each cell is a bare `<td class="c-<state>">`: at 200 tasks x 25 runs the
page stays small; ui.js turns a click on a cell into the run page with that task's log.
A graph over `MAX_GRAPH_NODES` tasks is not drawn: the page lists the tasks and says why.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import anyio
from markupsafe import Markup

from orchestrator.api.inputs import query_int
from orchestrator.errors import RunNotFoundError
from orchestrator.state import TaskState
from orchestrator.ui.graph_layout import MAX_GRAPH_NODES, layout_dag
from orchestrator.ui.pages import Page
from orchestrator.ui.trigger_form import CONF_JSON, fields_of

if TYPE_CHECKING:
    from collections.abc import Iterator

    from starlette.requests import Request
    from starlette.responses import Response

    from orchestrator.authoring.dag import DAG
    from orchestrator.store.records import TaskInstanceRecord
    from orchestrator.ui.context import UiContext
    from orchestrator.ui.sessions import Session

GRID_RUNS = 25
GRID_MAX_RUNS = 100
SOURCE_MAX_BYTES = 512 * 1024

#: When a mapped task's elements differ, the cell shows the most telling of their states.
_TELLING = (
    TaskState.FAILED,
    TaskState.UPSTREAM_FAILED,
    TaskState.UP_FOR_RETRY,
    TaskState.RUNNING,
    TaskState.DEFERRED,
    TaskState.QUEUED,
    TaskState.SCHEDULED,
    TaskState.NONE,
    TaskState.CANCELLED,
    TaskState.SKIPPED,
    TaskState.SUCCESS,
)


def telling_state(states: list[TaskState]) -> TaskState:
    """The one state a grid cell or graph box shows for a task's instances in one run."""
    present = set(states)
    return next((state for state in _TELLING if state in present), TaskState.NONE)


def states_by_task(instances: list[TaskInstanceRecord]) -> dict[str, str]:
    grouped: dict[str, list[TaskState]] = {}
    for ti in instances:
        grouped.setdefault(ti.task_id, []).append(ti.state)
    return {task_id: telling_state(states).value for task_id, states in grouped.items()}


@dataclass(frozen=True, kw_only=True)
class Header:
    dag: DAG
    file: str | None
    paused: bool
    tab: str
    doc_md: str | None = None  # an Airflow DAG's `doc_md`, shown as text (never as HTML)


def _header(ui: UiContext, request: Request, tab: str) -> Header:
    bag = ui.engine.dagbag
    dag = bag.get(request.path_params["dag_id"])
    return Header(
        dag=dag,
        file=bag.files.get(dag.dag_id),
        paused=dag.dag_id in ui.engine.starter.paused,
        tab=tab,
        doc_md=_text_or_none(getattr(dag, "doc_md", None)),
    )


def _text_or_none(value: object) -> str | None:
    return value if isinstance(value, str) and value.strip() else None


async def grid(ui: UiContext, request: Request, session: Session | None) -> Response:
    header = _header(ui, request, "grid")
    limit = query_int(request, "runs", default=GRID_RUNS, low=1, high=GRID_MAX_RUNS)
    before = request.query_params.get("before") or None
    reads = await ui.reads()
    page = await reads.grid(header.dag.dag_id, limit + 1, before)
    runs = page.runs[:limit]
    following = runs[-1].run_id if len(page.runs) > limit else None
    task_ids = list(header.dag.tasks)
    task_ids += [task_id for task_id in page.task_ids() if task_id not in header.dag.tasks]
    return await ui.render_in_thread(
        request,
        session,
        "dag_grid.html",
        header=header,
        runs=runs,
        rows=_LazyRows(task_ids, [page.task_instances[run.run_id] for run in reversed(runs)]),
        following=following,
        limit=limit,
        before=before,
    )


class _LazyRows:
    """The grid's rows, `(task_id, its cells, oldest run first)`, worked out as the
    template renders them: in the render's worker thread, not on the event loop."""

    def __init__(self, task_ids: list[str], columns: list[list[TaskInstanceRecord]]) -> None:
        self.task_ids, self.columns = task_ids, columns

    def __iter__(self) -> Iterator[tuple[str, Markup]]:
        states = [states_by_task(instances) for instances in self.columns]
        for task_id in self.task_ids:
            # Joined here, not looped in Jinja: 5,000 cells cost a tenth. Safe as markup: a
            # cell's class is a TaskState value or "absent", never text from a user.
            cells = (f'<td class="c-{column.get(task_id, "absent")}"></td>' for column in states)
            yield task_id, Markup("".join(cells))


async def graph(ui: UiContext, request: Request, session: Session | None) -> Response:
    header = _header(ui, request, "graph")
    reads = await ui.reads()
    chosen = request.query_params.get("run")
    recent = await reads.list_runs(dag_id=header.dag.dag_id, limit=GRID_RUNS)
    run = await reads.get_run(chosen) if chosen else (recent[0] if recent else None)
    if chosen and (run is None or run.dag_id != header.dag.dag_id):
        raise RunNotFoundError(f"DAG {header.dag.dag_id!r} has no run {chosen!r}", run_id=chosen)
    states = states_by_task(await reads.list_task_instances(run.run_id)) if run else {}
    layout = layout_dag(header.dag)
    return ui.render(
        request,
        session,
        "dag_graph.html",
        header=header,
        layout=layout,
        states=states,
        run=run,
        recent=recent,
        max_nodes=MAX_GRAPH_NODES,
        upstreams={tid: sorted(t.upstream_task_ids) for tid, t in header.dag.tasks.items()},
    )


async def source(ui: UiContext, request: Request, session: Session | None) -> Response:
    header = _header(ui, request, "source")
    text, cut = ("", False)
    if header.file is not None:
        text, cut = await anyio.to_thread.run_sync(_read_source, Path(header.file))
    return ui.render(request, session, "dag_source.html", header=header, text=text, cut=cut)


def _read_source(path: Path) -> tuple[str, bool]:
    try:
        with path.open("rb") as file:
            data = file.read(SOURCE_MAX_BYTES + 1)
    except OSError as error:
        return f"(cannot read {path}: {error.strerror})", False
    return data[:SOURCE_MAX_BYTES].decode("utf-8", "replace"), len(data) > SOURCE_MAX_BYTES


async def trigger_form(ui: UiContext, request: Request, session: Session | None) -> Response:
    header = _header(ui, request, "trigger")
    return ui.render(
        request,
        session,
        "dag_trigger.html",
        header=header,
        fields=fields_of(header.dag.params),
        conf_json=CONF_JSON,
        idempotency_key=secrets.token_urlsafe(16),
    )


PAGES = (
    Page(
        method="GET",
        path="/dags/{dag_id}",
        handler=grid,
        auth="read",
        summary="A DAG's grid: its last runs x its tasks, coloured by state",
    ),
    Page(
        method="GET",
        path="/dags/{dag_id}/graph",
        handler=graph,
        auth="read",
        summary="A DAG's graph, coloured by one of its runs",
    ),
    Page(
        method="GET",
        path="/dags/{dag_id}/source",
        handler=source,
        auth="read",
        summary="A DAG's source file",
    ),
    Page(
        method="GET",
        path="/dags/{dag_id}/trigger",
        handler=trigger_form,
        auth="trigger",
        summary="The form that starts a run with conf built from the DAG's params",
    ),
)
