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
    state directory, read-only, then reads every JSON value (a run's conf, a result, an
    event's payload, a trigger's arguments, ...) and names each row whose value cannot be
    read: its table, key and column. Exit code 0 when it is sound, 1 when it is damaged or
    missing (the message says how to recover).

    \b
    Example:
      orchestrator db check --state-dir /var/lib/orchestrator
    """
    import anyio

    path, problems, damaged = anyio.run(_integrity_problems, load_cli_settings())
    if not problems and not damaged:
        click.echo(click.style("ok", fg="green"))
        return
    count = len(problems) + len(damaged)
    click.echo(click.style(f"{path}: {count} problem(s):", fg="red", bold=True))
    for problem in problems:
        click.echo(f"  {problem}")
    for row in damaged:
        click.echo(f"  damaged row: {row}")
    if not problems:
        click.echo(_DAMAGED_ROWS_HELP)
        ctx.exit(EXIT_FAILED)
    click.echo(
        f"Stop every orchestrator using it, then salvage what can be read with "
        f'`sqlite3 {path} ".recover" | sqlite3 {path}.recovered`, '
        f"or move it aside (`mv {path} {path}.corrupt`) to start afresh."
    )
    ctx.exit(EXIT_FAILED)


_DAMAGED_ROWS_HELP = (
    "The file itself is sound: each listing shows these rows as damaged, and the daemon fails "
    "or skips what depends on them (its log says which). Remove or repair them with sqlite3 "
    "once no orchestrator uses the database; re-add a damaged webhook with --replace."
)


async def _integrity_problems(settings: Settings) -> tuple[str, list[str], list[str]]:
    """The database's path, the problems of the file, and the rows whose JSON is damaged."""
    from orchestrator.cli.lookup import open_state

    async with open_state(settings) as store:
        problems = await store.integrity_check()
        damaged = [] if problems else await store.damaged_rows()
        return store.path, problems, damaged
