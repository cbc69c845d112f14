"""The DAGs page: every DAG, how it starts, whether it is paused, its last runs, its next run."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from orchestrator.ui.pages import Page

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response

    from orchestrator.errors import DagError
    from orchestrator.store.records import RunRecord
    from orchestrator.ui.context import UiContext
    from orchestrator.ui.sessions import Session

LAST_RUNS = 10  # dots per DAG


@dataclass(frozen=True, kw_only=True)
class DagRow:
    dag_id: str
    description: str
    file: str | None
    schedule: str | None
    run_triggers: list[str]
    paused: bool
    tasks: int
    last_runs: list[RunRecord]  # newest first
    next_run: float | None
    tags: tuple[str, ...]


async def dag_rows(ui: UiContext) -> list[DagRow]:
    engine, now = ui.engine, ui.clock.now()
    bag, paused = engine.dagbag, engine.starter.paused
    recent = await (await ui.reads()).recent_runs_by_dag(LAST_RUNS)
    rows = []
    for dag_id, dag in sorted(bag.dags.items()):
        starts = dag.starts
        rows.append(
            DagRow(
                dag_id=dag_id,
                description=dag.description,
                file=bag.files.get(dag_id),
                schedule=None if starts.schedule is None else starts.schedule_text,
                run_triggers=starts.source_names,
                paused=dag_id in paused,
                tasks=len(dag.tasks),
                last_runs=recent.get(dag_id, []),
                next_run=None if dag_id in paused else engine.starter.ticks.next_look(dag, now),
                tags=dag.tags,
            )
        )
    return rows


def import_errors(ui: UiContext) -> list[DagError]:
    return list(ui.engine.dagbag.errors)


async def dags(ui: UiContext, request: Request, session: Session | None) -> Response:
    return ui.render(
        request, session, "dags.html", rows=await dag_rows(ui), errors=import_errors(ui)
    )


PAGES = (
    Page(
        method="GET",
        path="/dags",
        handler=dags,
        auth="read",
        summary="Every DAG: schedule or run triggers, paused, last runs, next run, import errors",
    ),
)
