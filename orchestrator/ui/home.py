"""The home page: is the daemon well, what ran in the last day, what failed, who was told."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from orchestrator.state import RunState
from orchestrator.ui.pages import Page

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response

    from orchestrator.execution.interface import ExecutorStatus
    from orchestrator.ui.context import UiContext
    from orchestrator.ui.sessions import Session

DAY = 86400.0
RECENT_FAILURES = 10
RECENT_ALERTS = 10


@dataclass(frozen=True, kw_only=True)
class Health:
    uptime: float
    loop_lag: float  # seconds the event loop took to answer its last ping
    blocked_by: str | None  # who blocked the loop last, if anyone did
    slots_used: int
    slots: int
    triggers_waiting: int  # deferred tasks' triggers hosted or waiting for a place
    run_triggers: int
    store_bytes: int
    full_disk: str | None
    last_error: str | None
    last_error_at: float | None
    executor: ExecutorStatus  # where sync tries run: local, or Dask (connected or why not)


def health(ui: UiContext) -> Health:
    engine = ui.engine
    triggers = engine.triggerer.statistics()
    last_error = ui.last_error
    return Health(
        uptime=ui.clock.now() - ui.started_at,
        loop_lag=engine.watchdog.lag,
        blocked_by=engine.watchdog.blocked_by,
        slots_used=engine.scheduler.slots_used,
        slots=engine.scheduler.slots,
        triggers_waiting=triggers.running + triggers.waiting,
        run_triggers=len(engine.starter.host.hosted()),
        store_bytes=ui.store.store_size(),
        full_disk=engine.full_disk.reason,
        last_error=last_error.message,
        last_error_at=last_error.at,
        executor=engine.executor.describe(),
    )


async def home(ui: UiContext, request: Request, session: Session | None) -> Response:
    since = ui.clock.now() - DAY
    reads = await ui.reads()
    counts = await reads.run_counts_since(since)
    failures = await reads.list_runs(state=RunState.FAILED, limit=RECENT_FAILURES)
    alerts = await reads.list_alerts(limit=RECENT_ALERTS)
    return ui.render(
        request,
        session,
        "home.html",
        health=health(ui),
        counts=[(state.value, counts.get(state, 0)) for state in RunState],
        failures=failures,
        alerts=alerts,
        channels=ui.channels(),
    )


PAGES = (
    Page(
        method="GET",
        path="/",
        handler=home,
        auth="read",
        summary="The daemon's health, runs by state in the last day, recent failures",
    ),
)
