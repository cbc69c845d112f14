"""`orchestrator runs ...`: the runs recorded in the state directory, and cancelling one."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from orchestrator.cli.options import load_cli_settings, settings_options
from orchestrator.state import RunState

if TYPE_CHECKING:
    from orchestrator.cli.views import TaskDetail
    from orchestrator.config import Settings
    from orchestrator.daemon.state_lock import Holder
    from orchestrator.store.records import RunRecord


@click.group("runs")
def runs_group() -> None:
    """Look at runs and their tasks, or cancel a run."""


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


# -- cancel -------------------------------------------------------------------------------------


@runs_group.command("cancel")
@click.argument("run_id")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@settings_options
def cancel_run(run_id: str, as_json: bool) -> None:
    """Cancel a run: its running tasks are stopped, the ones not started are marked cancelled.

    With a daemon running, the daemon stops the run's tasks now. Without one, the run is
    marked cancelled in the state directory. A run that has already finished is left as it
    is. `orchestrator tasks clear` runs a cancelled run's tasks again.

    \b
    Example:
      orchestrator runs cancel 20240601T120000Z-3fa2c1
    """
    import anyio

    from orchestrator.cli.daemonlink import daemon_or_locally
    from orchestrator.cli.output import echo_json

    settings = load_cli_settings()
    record = anyio.run(read_run, settings, run_id)
    if record.state.finished:
        via = "none"
    else:
        via = daemon_or_locally(
            settings,
            command=f"orchestrator runs cancel {run_id}",
            ask=lambda holder: _cancel_through(settings, holder, run_id),
            prepare=lambda: None,
            locally=lambda _: anyio.run(_cancel_in_store, settings, run_id),
        )
    if as_json:
        echo_json({"run_id": run_id, "via": via, "cancelled": via != "none", "was": record.state})
    else:
        click.echo(_cancel_message(record, via))


def _cancel_through(settings: Settings, holder: Holder, run_id: str) -> str:
    from orchestrator.cli.daemonlink import ask_daemon

    ask_daemon(settings, holder, {"op": "cancel", "run_id": run_id})
    return "daemon"


def _cancel_message(record: RunRecord, via: str) -> str:
    if via == "daemon":
        return f"run {record.run_id} cancelled: the daemon is stopping its running tasks"
    if via == "store":
        return f"run {record.run_id} cancelled in the state directory (no daemon is running)"
    return f"run {record.run_id} had already finished ({record.state}): nothing to cancel"


async def _cancel_in_store(settings: Settings, run_id: str) -> str:
    """No daemon runs: mark the run and its unfinished tasks cancelled in the store."""
    import time

    from orchestrator.scheduling.run_edits import cancel_stored_run, stored_run
    from orchestrator.store import open_store

    async with open_store(settings.state_dir, synchronous=settings.synchronous) as store:
        record = await stored_run(store, run_id)
        if record.state.finished:
            return "none"  # it ended between our look and the lock
        await cancel_stored_run(store, record, now=time.time())
    return "store"


async def read_run(settings: Settings, run_id: str) -> RunRecord:
    """The run from the store (read-only), or a `RunError` naming close matches."""
    from orchestrator.cli.lookup import find_run, has_state, open_state, unknown_run_message
    from orchestrator.errors import RunError

    if not has_state(settings):
        raise RunError(unknown_run_message(run_id, [], where=str(settings.state_dir)))
    async with open_state(settings) as store:
        return await find_run(store, run_id)
