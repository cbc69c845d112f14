"""`orchestrator tasks ...`: one task of one run."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from orchestrator.cli.options import load_cli_settings, settings_options

if TYPE_CHECKING:
    from orchestrator.config import Settings
    from orchestrator.store.records import TryRecord


@click.group("tasks")
def tasks_group() -> None:
    """Look at the tasks of a run."""


@tasks_group.command("logs")
@click.argument("run_id")
@click.argument("task_id")
@click.option(
    "--try", "try_number", type=click.IntRange(min=1), help="Which try [default: the latest]."
)
@click.option(
    "--map-index",
    type=click.IntRange(min=0),
    help="Which instance of an expanded task (0 for the first).",
)
@settings_options
def show_logs(run_id: str, task_id: str, try_number: int | None, map_index: int | None) -> None:
    """Print the log of one try of a task: everything it printed and logged.

    The latest try unless --try says otherwise. The log's path is printed on stderr,
    so stdout is the log alone (pipe it to grep or less).

    \b
    Example:
      orchestrator tasks logs manual__2024-06-01T12:00:00 train --try 1
    """
    import anyio

    attempt = anyio.run(_find_try, load_cli_settings(), run_id, task_id, try_number, map_index)
    click.echo(
        click.style(f"# {attempt.log_path} (try {attempt.try_number}, {attempt.state})", dim=True),
        err=True,
    )
    copy_log(Path(attempt.log_path))


async def _find_try(
    settings: Settings,
    run_id: str,
    task_id: str,
    try_number: int | None,
    map_index: int | None,
) -> TryRecord:
    from orchestrator.cli.lookup import (
        find_run,
        find_task_instance,
        find_try,
        has_state,
        open_state,
        unknown_run_message,
    )
    from orchestrator.errors import RunError

    if not has_state(settings):
        raise RunError(unknown_run_message(run_id, [], where=str(settings.state_dir)))
    async with open_state(settings) as store:
        run = await find_run(store, run_id)
        ti = await find_task_instance(store, run, task_id, map_index)
        return await find_try(store, ti, try_number)


def copy_log(path: Path) -> None:
    """Stream the log file to stdout as bytes: a log may hold any encoding, or be large."""
    import shutil
    import sys

    from orchestrator.errors import OrchestratorError

    try:
        with path.open("rb") as log:
            sys.stdout.flush()  # what was written as text goes first
            shutil.copyfileobj(log, sys.stdout.buffer)
    except FileNotFoundError:
        raise OrchestratorError(
            f"the log file {path} does not exist any more (was the logs folder cleaned?)"
        ) from None
