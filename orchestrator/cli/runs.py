"""`orchestrator runs ...`: the runs recorded in the state directory."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from orchestrator.cli.options import load_cli_settings, settings_options
from orchestrator.state import RunState

if TYPE_CHECKING:
    from orchestrator.cli.views import TaskDetail
    from orchestrator.config import Settings
    from orchestrator.store.records import RunRecord


@click.group("runs")
def runs_group() -> None:
    """Look at runs and their tasks."""


@runs_group.command("list")
@click.option("--dag", "dag_id", metavar="DAG_ID", help="Only the runs of this DAG.")
@click.option(
    "--state",
    type=click.Choice([state.value for state in RunState]),
    help="Only runs in this state.",
)
@click.option(
    "--limit", type=click.IntRange(min=1), default=20, show_default=True, help="At most this many."
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@settings_options
def list_runs(dag_id: str | None, state: str | None, limit: int, as_json: bool) -> None:
    """List runs, newest first.

    Each run with its DAG, state, type (manual, scheduled, event, backfill), when it was
    queued and how long it took.

    \b
    Example:
      orchestrator runs list --dag hello --state failed --limit 5
    """
    import anyio

    from orchestrator.cli.output import echo_json
    from orchestrator.cli.views import make_console, run_json, runs_table

    settings = load_cli_settings()
    runs = anyio.run(_fetch_runs, settings, dag_id, state, limit)
    if as_json:
        echo_json([run_json(run) for run in runs])
    elif runs:
        make_console().print(runs_table(runs))
    else:
        click.echo(_nothing_found(settings, dag_id, state))


async def _fetch_runs(
    settings: Settings, dag_id: str | None, state: str | None, limit: int
) -> list[RunRecord]:
    from orchestrator.cli.lookup import has_state, open_state

    if not has_state(settings):
        return []
    async with open_state(settings) as store:
        run_state = RunState(state) if state is not None else None
        return await store.list_runs(dag_id=dag_id, state=run_state, limit=limit)


def _nothing_found(settings: Settings, dag_id: str | None, state: str | None) -> str:
    from orchestrator.cli.lookup import has_state
    from orchestrator.cli.output import display_path

    if not has_state(settings):
        return (
            f"No runs yet in {display_path(settings.state_dir)}. "
            "Start one with: orchestrator run DAG_ID"
        )
    filters = " and ".join(
        part for part in (dag_id and f"DAG {dag_id!r}", state and f"state {state!r}") if part
    )
    return f"No runs match {filters}." if filters else "No runs yet."


@runs_group.command("show")
@click.argument("run_id")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@settings_options
def show_run(run_id: str, as_json: bool) -> None:
    """Show one run: its fields and each task's state, tries, duration, error and log.

    \b
    Example:
      orchestrator runs show manual__2024-06-01T12:00:00
    """
    import anyio

    from orchestrator.cli.output import echo_json
    from orchestrator.cli.views import make_console, run_detail_json, run_view

    run, details = anyio.run(_fetch_run, load_cli_settings(), run_id)
    if as_json:
        echo_json(run_detail_json(run, details))
    else:
        make_console().print(run_view(run, details))


async def _fetch_run(settings: Settings, run_id: str) -> tuple[RunRecord, list[TaskDetail]]:
    from orchestrator.cli.lookup import find_run, has_state, open_state, unknown_run_message
    from orchestrator.cli.views import TaskDetail
    from orchestrator.errors import RunError

    if not has_state(settings):
        raise RunError(unknown_run_message(run_id, [], where=str(settings.state_dir)))
    async with open_state(settings) as store:
        run = await find_run(store, run_id)
        details = []
        for ti in await store.list_task_instances(run_id):
            tries = await store.list_tries(run_id, ti.task_id, ti.map_index)
            details.append(TaskDetail(ti, tries[-1].log_path if tries else None))
        return run, details
