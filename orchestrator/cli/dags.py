"""`orchestrator dags ...`: the DAGs the DAGs folder defines."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from orchestrator.cli.options import load_cli_settings, settings_options

if TYPE_CHECKING:
    from orchestrator.config import Settings
    from orchestrator.dagbag import DagBag


@click.group("dags")
def dags_group() -> None:
    """Look at the DAGs in the DAGs folder."""


@dags_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@settings_options
def list_dags(as_json: bool) -> None:
    """List the DAGs of the DAGs folder, and the files that fail to import.

    Each DAG with its file, number of tasks and description; then every import error
    as file:line: message. Import errors do not change the exit code (0): the other
    DAGs still work.

    \b
    Example:
      orchestrator dags list --dags-folder examples
    """
    from orchestrator.cli.output import echo_json
    from orchestrator.cli.views import dags_json, dags_view, make_console

    bag = load_bag_quietly(load_cli_settings())
    if as_json:
        echo_json(dags_json(bag))
    else:
        make_console().print(dags_view(bag))


def load_bag_quietly(settings: Settings) -> DagBag:
    """Import the DAG files with their prints sent to stderr, so stdout stays our output."""
    import contextlib
    import sys

    from orchestrator.dagbag import load_dag_bag

    with contextlib.redirect_stdout(sys.stderr):
        return load_dag_bag(settings.dags_folder, pools=settings.pool_slots())
