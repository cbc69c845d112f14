"""`orchestrator events list`: which event started which run.

An event is something a DAG's run trigger saw (a file landed, an asset was updated, another DAG
finished). Each starts one run, or waits for its DAG's batch window or debounce to gather it
with others into one run.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from orchestrator.cli.options import load_cli_settings, settings_options
from orchestrator.cli.output import shorten

if TYPE_CHECKING:
    from rich.console import RenderableType

    from orchestrator.config import Settings
    from orchestrator.store.records import EventRecord

_KEY_CHARS = 48  # a dedup key in the table (a path, a size and a time); `--json` has it whole
_SOURCE_CHARS = 40  # a run trigger's one-line description lists every field: keep its start
WAITING = "waiting (batch window)"


@click.group("events")
def events_group() -> None:
    """Look at the events that started runs."""


@events_group.command("list")
@click.option("--dag", "dag_id", metavar="DAG_ID", help="Only the events of this DAG.")
@click.option("--run", "run_id", metavar="RUN_ID", help="Only the events that started this run.")
@click.option(
    "--limit", type=click.IntRange(min=1), default=20, show_default=True, help="At most this many."
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@settings_options
def list_events(dag_id: str | None, run_id: str | None, limit: int, as_json: bool) -> None:
    """List events, newest first, with the run each started.

    Each event with its id, DAG, the run trigger that saw it, its dedup key (what makes it
    one event: a second delivery with the same key starts nothing), when it was received and
    its run, or "waiting" while its DAG's batch window or debounce gathers events.

    \b
    Example:
      orchestrator events list --dag retrain --limit 5
    """
    import anyio

    from orchestrator.cli.output import echo_json
    from orchestrator.cli.views import make_console

    settings = load_cli_settings()
    events = anyio.run(_fetch_events, settings, dag_id, run_id, limit)
    if as_json:
        from dataclasses import asdict

        echo_json([asdict(event) for event in events])
    elif events:
        make_console().print(_events_table(events))
    else:
        click.echo(_nothing_found(dag_id, run_id))


async def _fetch_events(
    settings: Settings, dag_id: str | None, run_id: str | None, limit: int
) -> list[EventRecord]:
    from orchestrator.cli.lookup import has_state, open_state

    if not has_state(settings):
        return []
    async with open_state(settings) as store:
        return await store.list_events(dag_id=dag_id, run_id=run_id, limit=limit)


def _nothing_found(dag_id: str | None, run_id: str | None) -> str:
    filters = " and ".join(
        part for part in (dag_id and f"DAG {dag_id!r}", run_id and f"run {run_id!r}") if part
    )
    if filters:
        return f"No events match {filters}."
    return (
        "No events yet: they come from DAGs' run triggers (run_on=...) while "
        "`orchestrator daemon` runs."
    )


def shorten_key(key: str) -> str:
    """The start and the end of a long dedup key (the end holds the version: size, ETag)."""
    if len(key) <= _KEY_CHARS:
        return key
    half = (_KEY_CHARS - 3) // 2
    return f"{key[:half]}...{key[-half:]}"


def _events_table(events: list[EventRecord]) -> RenderableType:
    from rich import box
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    from orchestrator.cli.output import damage_notes, marked_damaged
    from orchestrator.cli.views import format_time

    table = Table(box=box.SIMPLE_HEAD)
    for name in ("event", "dag", "source", "dedup key", "received", "run"):
        table.add_column(name, no_wrap=True)
    for event in events:
        table.add_row(
            marked_damaged(str(event.event_id), event.damaged),
            event.dag_id,
            shorten(event.source, _SOURCE_CHARS),
            shorten_key(event.dedup_key),
            format_time(event.received_at),
            event.run_id or Text(WAITING, style="yellow"),
        )
    notes = damage_notes([(f"event {event.event_id}", event.damaged) for event in events])
    return Group(table, *notes)
