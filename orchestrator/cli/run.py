"""`orchestrator run DAG_ID`: one run of a DAG in the foreground, with a live display."""

from __future__ import annotations

from typing import Any

import click

from orchestrator.cli.options import load_cli_settings, settings_options
from orchestrator.errors import RunError

_JSON_KINDS = {
    list: "a list",
    str: "a string",
    int: "a number",
    float: "a number",
    bool: "a boolean",
    type(None): "null",
}


def parse_conf(text: str | None) -> dict[str, Any]:
    """The `--conf` text as a dict; raises `RunError` unless it is a JSON object."""
    import json

    if text is None:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise RunError(f"--conf is not valid JSON: {error}") from None
    if not isinstance(value, dict):
        kind = _JSON_KINDS.get(type(value), type(value).__name__)
        raise RunError(
            f'--conf must be a JSON object, got {kind}; for example --conf \'{{"day": "monday"}}\''
        )
    return value


@click.command("run")
@click.argument("dag_id")
@click.option(
    "--conf",
    "conf_text",
    metavar="JSON",
    help="The run's conf, a JSON object the tasks can read (context.conf).",
)
@click.option(
    "--slots",
    type=click.IntRange(min=1),
    help="Tasks that may run at once [default: `slots` from the config, else the CPU count].",
)
@click.option(
    "--in-process",
    is_flag=True,
    help="Run sync tasks in threads of this process instead of worker processes: "
    "a faster start, but no isolation.",
)
@click.option(
    "-I",
    "--ignore-depends-on-past",
    is_flag=True,
    help="Run tasks that depend on their past even if the previous run's did not succeed "
    "(Airflow's -I). Only this run: the next one waits on it as usual.",
)
@settings_options
@click.pass_context
def run_command(
    ctx: click.Context,
    dag_id: str,
    conf_text: str | None,
    slots: int | None,
    in_process: bool,
    ignore_depends_on_past: bool,
) -> None:
    """Run a DAG once, in the foreground, and show its progress.

    Loads the DAGs folder, starts the engine in this process, triggers one run of DAG_ID and
    shows each task as it moves. At the end it prints the run's state, the error and log of
    each failed task, and the results of the last tasks.

    A task that depends on its past (`depends_on_past`) whose previous run's task failed
    would wait forever, since nothing here can clear that task: the command then stops,
    leaves the run unfinished for a daemon, and says how to go on.

    Exit code 0 when the run succeeded, 1 when it failed, was cancelled or waits on a failed
    previous run, 2 for a bad DAG id or --conf, 130 after Ctrl-C (which cancels the run and
    waits for it to stop).

    \b
    Example:
      orchestrator run hello --conf '{"name": "Ada"}'
    """
    conf = parse_conf(conf_text)
    settings = load_cli_settings(slots=slots, in_process=True if in_process else None)
    from orchestrator.loading.importcheck import prestart_checker

    prestart_checker()  # starts while the engine's modules import: a faster first task
    from orchestrator.cli.foreground import RunAsked, run_in_foreground

    asked = RunAsked(conf, ignore_depends_on_past=ignore_depends_on_past)
    ctx.exit(run_in_foreground(settings, dag_id, asked))
