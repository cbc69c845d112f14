"""`orchestrator dags ...`: the DAGs the DAGs folder defines, and pausing them."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from orchestrator.cli.options import load_cli_settings, settings_options

if TYPE_CHECKING:
    from orchestrator.authoring.dag import DAG
    from orchestrator.config import Settings
    from orchestrator.daemon.state_lock import Holder
    from orchestrator.loading.dagbag import DagBag


@click.group("dags")
def dags_group() -> None:
    """Look at the DAGs in the DAGs folder, pause and unpause them."""


@dags_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@settings_options
def list_dags(as_json: bool) -> None:
    """List the DAGs of the DAGs folder, and the files that fail to import.

    Each DAG with its file, number of tasks, whether it is paused, its schedule, what else
    starts its runs (run triggers, assets, other DAGs) and its description; then every import
    error as file:line: message. Import errors do not change the exit code (0): the other
    DAGs still work.

    \b
    Example:
      orchestrator dags list --dags-folder examples
    """
    import anyio

    from orchestrator.cli.output import echo_json
    from orchestrator.cli.views import dags_json, dags_view, make_console

    settings = load_cli_settings()
    bag = load_bag_quietly(settings)
    paused = anyio.run(_paused_dags, settings)
    if as_json:
        echo_json(dags_json(bag, paused))
    else:
        make_console().print(dags_view(bag, paused))


def load_bag_quietly(settings: Settings) -> DagBag:
    """Import the DAG files with their prints sent to stderr, so stdout stays our output."""
    import contextlib
    import sys

    from orchestrator.loading.dagbag import load_dag_bag
    from orchestrator.loading.importcheck import ImportLimits

    limits = ImportLimits.of(settings)
    with contextlib.redirect_stdout(sys.stderr):
        return load_dag_bag(
            settings.dags_folder,
            pools=settings.pool_slots(),
            limits=limits,
            state_dir=settings.state_dir,
        )


async def _paused_dags(settings: Settings) -> set[str]:
    """The DAG ids paused in the store (none before anything was recorded)."""
    from orchestrator.cli.lookup import has_state, open_state

    if not has_state(settings):
        return set()
    async with open_state(settings) as store:
        return {dag.dag_id for dag in await store.list_dags() if dag.is_paused}


# -- pause / unpause ---------------------------------------------------------------------------


@dags_group.command("pause")
@click.argument("dag_id")
@settings_options
def pause_dag(dag_id: str) -> None:
    """Pause a DAG: no new run of it starts; runs already running go on.

    Its schedule, run triggers and `orchestrator trigger` start nothing until it is
    unpaused (its run triggers then look for what came meanwhile). Reaches the daemon at
    once, or is recorded for when it starts.

    \b
    Example:
      orchestrator dags pause retrain
    """
    _set_paused(dag_id, paused=True)
    click.echo(f"paused {dag_id}: no new runs start; running runs go on")


@dags_group.command("unpause")
@click.argument("dag_id")
@settings_options
def unpause_dag(dag_id: str) -> None:
    """Unpause a DAG: its schedule and run triggers start runs again.

    Runs queued while it was paused start too.

    \b
    Example:
      orchestrator dags unpause retrain
    """
    _set_paused(dag_id, paused=False)
    click.echo(f"unpaused {dag_id}: its runs start again")


def _set_paused(dag_id: str, *, paused: bool) -> None:
    """Through the daemon when one runs, else straight into the store (under the state lock)."""
    from orchestrator.cli.daemonlink import ask_daemon, daemon_or_locally, load_dag

    settings = load_cli_settings()
    verb = "pause" if paused else "unpause"

    def ask(holder: Holder) -> None:
        ask_daemon(settings, holder, {"op": verb, "dag_id": dag_id})

    def locally(loaded: tuple[DagBag, DAG]) -> None:
        _record_paused(settings, *loaded, paused=paused)

    daemon_or_locally(
        settings,
        command=f"orchestrator dags {verb} {dag_id}",
        ask=ask,
        prepare=lambda: load_dag(settings, dag_id),
        locally=locally,
    )


def _record_paused(settings: Settings, bag: DagBag, dag: DAG, *, paused: bool) -> None:
    import anyio

    anyio.run(_write_paused, settings, bag.files.get(dag.dag_id, dag.site.file), dag, paused)


async def _write_paused(settings: Settings, fileloc: str, dag: DAG, paused: bool) -> None:
    """Record the pause; the DAG's row is made first, as the daemon would on start."""
    import time

    from orchestrator.store import DagRecord, WriteBatch, open_store

    record = DagRecord(
        dag_id=dag.dag_id, fileloc=fileloc, description=dag.description, updated_at=time.time()
    )
    batch = WriteBatch()
    batch.upsert_dag(record)  # keeps is_paused of an existing row
    batch.set_dag_paused(dag.dag_id, paused)
    async with open_store(settings.state_dir, synchronous=settings.synchronous) as store:
        await store.commit(batch)
