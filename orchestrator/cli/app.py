"""The `orchestrator` command group: global options, error reporting and exit codes.

Every `OrchestratorError` becomes one line `error: <message>` on stderr and an exit code
from `exit_codes`; a user mistake never shows a traceback.

Only click is imported here and in the command modules: `orchestrator --help` must answer at
once, so the engine, the store and rich are imported inside the commands that use them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import click

from orchestrator.cli.alerts import alerts_group
from orchestrator.cli.connections import connections_group
from orchestrator.cli.daemon import daemon_command
from orchestrator.cli.dags import dags_group
from orchestrator.cli.db import db_group
from orchestrator.cli.events import events_group
from orchestrator.cli.exit_codes import EXIT_INTERRUPTED, exit_code_for
from orchestrator.cli.init import init_command
from orchestrator.cli.open import open_command
from orchestrator.cli.options import settings_options
from orchestrator.cli.run import run_command
from orchestrator.cli.runs import runs_group
from orchestrator.cli.tasks import tasks_group
from orchestrator.cli.tokens import tokens_group
from orchestrator.cli.trigger import backfill_command, trigger_command
from orchestrator.cli.triggers import triggers_group
from orchestrator.cli.variables import variables_group
from orchestrator.cli.webhooks import webhooks_group
from orchestrator.errors import OrchestratorError


def report_error(error: OrchestratorError) -> None:
    """Print `error: <message>` on stderr: the message is written for the user, no traceback."""
    click.echo(f"{click.style('error:', fg='red', bold=True)} {error}", err=True)


class OrchestratorGroup(click.Group):
    """The root group: turns our errors into one `error: ...` line and an exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except OrchestratorError as error:
            report_error(error)
            ctx.exit(exit_code_for(error))
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            ctx.exit(EXIT_INTERRUPTED)


@click.group(
    cls=OrchestratorGroup,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(package_name="orchestrator", message="%(prog)s %(version)s")
@settings_options
def cli() -> None:
    """Run pipelines that react: an event-driven, async orchestrator.

    Pipelines (DAGs) are Python files in the DAGs folder. Settings come from
    orchestrator.toml, ORCHESTRATOR_* environment variables and the options below
    (which every command also accepts after its name).

    \b
    Start here:
      orchestrator init my-project && cd my-project
      orchestrator dags list
      orchestrator run hello
    """


for _command in (
    init_command,
    run_command,
    daemon_command,
    trigger_command,
    backfill_command,
    dags_group,
    runs_group,
    tasks_group,
    triggers_group,
    events_group,
    webhooks_group,
    tokens_group,
    variables_group,
    connections_group,
    alerts_group,
    db_group,
    open_command,
):
    cli.add_command(_command)


def main(args: Sequence[str] | None = None) -> None:
    """Entry point of the `orchestrator` console script; exits with the command's code."""
    cli.main(args=list(args) if args is not None else None, prog_name="orchestrator")
