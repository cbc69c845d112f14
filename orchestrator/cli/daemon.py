"""`orchestrator daemon`: everything in one long-lived process (see orchestrator/daemon/)."""

from __future__ import annotations

import click

from orchestrator.cli.options import load_cli_settings, settings_options


@click.command("daemon")
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    help="Log lines for people (text) or for log collectors (json) [default: `log_format`].",
)
@click.option(
    "--shutdown-grace",
    type=click.FloatRange(min=0),
    help="Seconds running tasks may go on after SIGTERM [default: `shutdown_grace`, 30].",
)
@click.option(
    "--executor",
    type=click.Choice(["local", "dask"]),
    help="Run sync tasks in local worker processes or on Dask workers [default: `executor`, "
    "local].",
)
@click.option(
    "--dask-address",
    metavar="ADDRESS",
    help="The Dask scheduler to run tasks on, such as tcp://127.0.0.1:8786 (implies "
    "--executor dask); without it, `--executor dask` starts a LocalCluster.",
)
@settings_options
def daemon_command(
    log_format: str | None,
    shutdown_grace: float | None,
    executor: str | None,
    dask_address: str | None,
) -> None:
    """Run the scheduler, triggers and workers until stopped (SIGTERM or Ctrl-C).

    DAGs start runs by themselves from their schedules and run triggers; DAG files are
    reloaded when they change; `orchestrator trigger`, `dags pause` and `backfill` reach it at
    once. One daemon per state directory: a second one is refused.

    \b
    Example:
      orchestrator daemon --dags-folder examples/
      orchestrator daemon --executor dask --dask-address tcp://127.0.0.1:8786
    """
    if dask_address is not None and executor is None:
        executor = "dask"
    settings = load_cli_settings(
        log_format=log_format,
        shutdown_grace=shutdown_grace,
        executor=executor,
        dask_address=dask_address,
    )
    from orchestrator.loading.importcheck import prestart_checker

    prestart_checker()  # starts while the daemon's modules import: ready sooner
    import anyio

    from orchestrator.daemon.lifecycle import serve
    from orchestrator.daemon.log_setup import configure_logging

    configure_logging(settings.log_format)
    anyio.run(serve, settings)
