"""`orchestrator triggers list`: what is waiting, on what, since when.

Two kinds of waiting are recorded in the store: a DAG's run triggers (a FileTrigger in
`run_on=`, an asset, another DAG finishing), which start runs, and the triggers deferred task
instances wait on (a sensor, a deferrable operator). Only a running daemon actually watches
them, so the listing starts by saying whether one runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import click

from orchestrator.cli.options import load_cli_settings, settings_options
from orchestrator.cli.output import shorten

if TYPE_CHECKING:
    from rich.console import RenderableType

    from orchestrator.config import Settings
    from orchestrator.daemon.state_lock import Holder
    from orchestrator.store.records import RunSourceRecord, TriggerRecord

_VALUE_CHARS = 120  # one argument of a trigger in the table; `--json` has it whole


@dataclass(frozen=True)
class Waiting:
    """Everything recorded as waiting, and the daemon that watches it (None: nobody does)."""

    daemon: Holder | None
    sources: list[RunSourceRecord]
    triggers: list[TriggerRecord]
    executor: dict[str, Any] | None = None  # the daemon's, as its `ping` tells it


@click.group("triggers")
def triggers_group() -> None:
    """Look at what runs and tasks are waiting on."""


@triggers_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@settings_options
def list_triggers(as_json: bool) -> None:
    """List the run triggers of the DAGs and the triggers deferred tasks wait on.

    Run triggers (from `run_on=`): each DAG's source, since when it is armed, and whether it
    is watching or why not. Deferred tasks: the run and task, the trigger and its
    arguments, since when it waits and when it times out. Reads the state directory only;
    without a running daemon nothing is watching, and the first line says so.

    \b
    Example:
      orchestrator triggers list
    """
    import anyio

    from orchestrator.cli.daemonlink import running_daemon
    from orchestrator.cli.output import echo_json
    from orchestrator.cli.views import make_console

    settings = load_cli_settings()
    sources, triggers = anyio.run(_fetch_waiting, settings)
    daemon = running_daemon(settings)
    waiting = Waiting(daemon, sources, triggers, _executor_of(settings, daemon))
    if as_json:
        echo_json(_waiting_json(waiting))
    else:
        make_console().print(_waiting_view(waiting))


async def _fetch_waiting(settings: Settings) -> tuple[list[RunSourceRecord], list[TriggerRecord]]:
    from orchestrator.cli.lookup import has_state, open_state

    if not has_state(settings):
        return [], []
    async with open_state(settings) as store:
        return await store.list_run_sources(), await store.list_triggers()


def _executor_of(settings: Settings, daemon: Holder | None) -> dict[str, Any] | None:
    """Where the daemon runs tries (local, or Dask and whether it is connected); None: unknown."""
    from orchestrator.cli.daemonlink import ask_daemon
    from orchestrator.errors import OrchestratorError

    if daemon is None:
        return None
    try:
        executor = ask_daemon(settings, daemon, {"op": "ping"}).get("executor")
    except (OrchestratorError, OSError):  # starting, or busy: the listing goes on without it
        return None
    return executor if isinstance(executor, dict) else None


def executor_text(executor: dict[str, Any]) -> str:
    """`executor: dask, 2 workers at tcp://...`, or `executor: dask, disconnected: why`."""
    kind = executor.get("kind", "?")
    if not executor.get("connected"):
        return f"executor: {kind}, disconnected: {executor.get('detail') or 'no reason given'}"
    workers = executor.get("workers")
    text = f"executor: {kind}" + (f", {workers} workers" if workers is not None else "")
    return text + (f" at {executor['address']}" if executor.get("address") else "")


def source_status(source: RunSourceRecord, daemon: Holder | None) -> str:
    """ "watching", why it is not (its error), or that no daemon runs to watch it."""
    if source.error:
        return source.error
    return "watching" if daemon is not None else "not watching: no daemon is running"


def trigger_text(classpath: str, kwargs: dict[str, Any]) -> str:
    """`FileTrigger(directory='/data', pattern='*.csv', ...)`: the class and its key arguments.

    The text arguments (a directory, a bucket, a URL) say what it waits on; the others (flags,
    intervals) are left out, and `--json` has them all. Built from the stored row without
    importing the class: listing must not run user code.
    """
    name = classpath.rsplit(".", 1)[-1]
    shown = [
        f"{key}={shorten(value, _VALUE_CHARS)!r}"
        for key, value in kwargs.items()
        if isinstance(value, str)
    ]
    if len(shown) < len(kwargs):
        shown.append("...")
    return f"{name}({', '.join(shown)})"


# -- JSON --------------------------------------------------------------------------------------


def _waiting_json(waiting: Waiting) -> dict[str, Any]:
    from dataclasses import asdict

    daemon = waiting.daemon
    return {
        "daemon": None
        if daemon is None
        else {"pid": daemon.pid, "since": daemon.started_at, "executor": waiting.executor},
        "run_triggers": [
            {**asdict(source), "status": source_status(source, daemon)}
            for source in waiting.sources
        ],
        "deferred": [asdict(trigger) for trigger in waiting.triggers],
    }


# -- text --------------------------------------------------------------------------------------


def _waiting_view(waiting: Waiting) -> RenderableType:
    """The daemon line, then a table per kind of waiting (or one sentence when none waits)."""
    from rich.console import Group
    from rich.text import Text

    from orchestrator.cli.display import task_label
    from orchestrator.cli.output import damage_notes

    parts: list[RenderableType] = [_daemon_line(waiting.daemon, waiting.executor)]
    if waiting.sources:
        parts += [Text("Run triggers:", style="bold"), _sources_table(waiting)]
    if waiting.triggers:
        parts += [Text("Deferred tasks:", style="bold"), _triggers_table(waiting.triggers)]
    parts += damage_notes(
        [(f"run trigger {s.source} of DAG {s.dag_id}", s.damaged) for s in waiting.sources]
        + [
            (f"the trigger of {t.run_id} {task_label(t.task_id, t.map_index)}", t.damaged)
            for t in waiting.triggers
        ]
    )
    if not waiting.sources and not waiting.triggers:
        parts.append(Text("Nothing is waiting: no DAG has a run trigger and no task is deferred."))
    return Group(*parts)


def _daemon_line(daemon: Holder | None, executor: dict[str, Any] | None) -> RenderableType:
    from rich.text import Text

    if daemon is None:
        return Text(
            "No daemon is running, so nothing below is being watched; "
            "`orchestrator daemon` starts watching.",
            style="yellow",
        )
    pid = f"pid {daemon.pid}" if daemon.pid is not None else "pid unknown"
    since = f" since {daemon.started_at}" if daemon.started_at else ""
    if executor is None:
        return Text(f"Daemon running ({pid}){since}.", style="green")
    style = "green" if executor.get("connected") else "yellow"
    return Text(f"Daemon running ({pid}){since}; {executor_text(executor)}.", style=style)


def _sources_table(waiting: Waiting) -> RenderableType:
    from rich import box
    from rich.table import Table
    from rich.text import Text

    from orchestrator.cli.output import marked_damaged
    from orchestrator.cli.views import format_time

    table = Table(box=box.SIMPLE_HEAD)
    for name in ("dag", "source", "since", "status"):
        table.add_column(name, overflow="fold")
    for source in waiting.sources:
        status = source_status(source, waiting.daemon)
        style = "green" if status == "watching" else "yellow"
        table.add_row(
            marked_damaged(source.dag_id, source.damaged),
            source.source,
            format_time(source.armed_at),
            Text(status, style="red" if source.error else style),
        )
    return table


def _triggers_table(triggers: list[TriggerRecord]) -> RenderableType:
    from rich import box
    from rich.table import Table

    from orchestrator.cli.display import task_label
    from orchestrator.cli.output import marked_damaged
    from orchestrator.cli.views import format_time

    table = Table(box=box.SIMPLE_HEAD)
    for name in ("run", "task", "trigger", "since", "times out"):
        table.add_column(name, overflow="fold")
    for trigger in triggers:
        table.add_row(
            marked_damaged(trigger.run_id, trigger.damaged),
            task_label(trigger.task_id, trigger.map_index),
            trigger_text(trigger.classpath, trigger.kwargs),
            format_time(trigger.created_at),
            format_time(trigger.timeout_at) or "never",
        )
    return table
