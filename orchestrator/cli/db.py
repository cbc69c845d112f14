"""`orchestrator db ...`: the health of the database in the state directory."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from orchestrator.cli.exit_codes import EXIT_FAILED
from orchestrator.cli.options import load_cli_settings, settings_options

if TYPE_CHECKING:
    from orchestrator.config import Settings


@click.group("db")
def db_group() -> None:
    """Check the database that holds the runs."""


@db_group.command("check")
@settings_options
@click.pass_context
def check_database(ctx: click.Context) -> None:
    """Check the database for damage; print "ok" or every problem found.

    Runs SQLite's full integrity check and the foreign-key check on the database in the
    state directory, read-only. Exit code 0 when it is sound, 1 when it is damaged or
    missing (the message says how to recover).

    \b
    Example:
      orchestrator db check --state-dir /var/lib/orchestrator
    """
    import anyio

    path, problems = anyio.run(_integrity_problems, load_cli_settings())
    if not problems:
        click.echo(click.style("ok", fg="green"))
        return
    click.echo(click.style(f"{path}: {len(problems)} problem(s):", fg="red", bold=True))
    for problem in problems:
        click.echo(f"  {problem}")
    click.echo(
        f"Stop every orchestrator using it, then salvage what can be read with "
        f'`sqlite3 {path} ".recover" | sqlite3 {path}.recovered`, '
        f"or move it aside (`mv {path} {path}.corrupt`) to start afresh."
    )
    ctx.exit(EXIT_FAILED)


async def _integrity_problems(settings: Settings) -> tuple[str, list[str]]:
    """The database's path and the problems a full check finds (none when sound)."""
    from orchestrator.cli.lookup import open_state

    async with open_state(settings) as store:
        return store.path, await store.integrity_check()
