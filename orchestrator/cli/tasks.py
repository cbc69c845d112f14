"""`orchestrator tasks ...`: the tasks of one run: their logs, their rendered template fields
(Airflow tasks), and clearing them to run again."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from orchestrator.cli.options import load_cli_settings, settings_options

if TYPE_CHECKING:
    from orchestrator.config import Settings
    from orchestrator.daemon.state_lock import Holder
    from orchestrator.loading.dagbag import DagBag
    from orchestrator.store.records import TryRecord

Cleared = list[tuple[str, int]]  # (task_id, map_index) of each cleared task instance


#: Which try, and which instance of an expanded task: `logs` and `rendered` take both.
_try_number = click.option(
    "--try", "try_number", type=click.IntRange(min=1), help="Which try [default: the latest]."
)
_map_index = click.option(
    "--map-index",
    type=click.IntRange(min=0),
    help="Which instance of an expanded task (0 for the first).",
)


@click.group("tasks")
def tasks_group() -> None:
    """Look at the tasks of a run, or clear them to run again."""


@tasks_group.command("logs")
@click.argument("run_id")
@click.argument("task_id")
@_try_number
@_map_index
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

    from orchestrator.cli.output import warn

    found = anyio.run(_find_try, load_cli_settings(), run_id, task_id, try_number, map_index)
    attempt, damage = found
    if damage is not None:
        warn(f"{damage} (`orchestrator db check` lists every damaged row)")
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
) -> tuple[TryRecord, str | None]:
    """The try, and why its run or task instance is damaged (None when all of it reads)."""
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
        damage = (run.damaged and f"run {run.run_id} is damaged: {run.damaged}") or (
            ti.damaged and f"task {task_id} of run {run.run_id} is damaged: {ti.damaged}"
        )
        return await find_try(store, ti, try_number), damage


def copy_log(path: Path) -> None:
    """Stream the log file to stdout as bytes: a log may hold any encoding, or be large.

    A try's log is made by its first byte, so a missing one is an empty log (stderr says so).
    """
    import shutil
    import sys

    try:
        with path.open("rb") as log:
            sys.stdout.flush()  # what was written as text goes first
            shutil.copyfileobj(log, sys.stdout.buffer)
    except FileNotFoundError:
        click.echo(click.style("# (empty: the try has written nothing)", dim=True), err=True)


@tasks_group.command("rendered")
@click.argument("run_id")
@click.argument("task_id")
@_try_number
@_map_index
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@settings_options
def show_rendered(
    run_id: str, task_id: str, try_number: int | None, map_index: int | None, as_json: bool
) -> None:
    """Print the template fields one try of an Airflow task rendered (Airflow's "Rendered").

    Secrets are masked as Airflow masks them: values of Variables and connection passwords
    with a sensitive name (password, secret, token, key, ...) show as ***.

    \b
    Example:
      orchestrator tasks rendered manual__2024-06-01T12:00:00 extract --try 2
    """
    import json

    import anyio

    from orchestrator.airflow_compat.rendered import read_rendered
    from orchestrator.cli.output import echo_json
    from orchestrator.errors import OrchestratorError

    settings = load_cli_settings()
    attempt, _ = anyio.run(_find_try, settings, run_id, task_id, try_number, map_index)
    fields = read_rendered(attempt.log_path)
    if fields is None:
        raise OrchestratorError(
            f"try {attempt.try_number} of task {task_id} rendered no template fields "
            "(not an Airflow task with template_fields, or it did not get that far)"
        )
    if as_json:
        echo_json(
            {"run_id": run_id, "task_id": task_id, "try": attempt.try_number, "fields": fields}
        )
        return
    click.echo(click.style(f"# try {attempt.try_number}, {attempt.state}", dim=True), err=True)
    for name, value in fields.items():
        text = value if isinstance(value, str) else json.dumps(value, indent=2, ensure_ascii=False)
        click.echo(f"{click.style(name, bold=True)}:\n{text}\n")


# -- clear --------------------------------------------------------------------------------------


@tasks_group.command("clear")
@click.argument("run_id")
@click.argument("task_ids", metavar="TASK_ID...", nargs=-1, required=True)
@click.option(
    "--no-downstream",
    "only_named",
    is_flag=True,
    help="Clear only the named tasks, not the tasks downstream of them.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@settings_options
def clear_tasks(run_id: str, task_ids: tuple[str, ...], only_named: bool, as_json: bool) -> None:
    """Run tasks of a run again (Airflow's "clear"), and the tasks downstream of them.

    The tasks go back to `none`: their results are forgotten, their tries are kept (the next
    try number goes on) and their retries given back. A finished run is queued again. A task
    that is still running, waiting or up for retry is refused: cancel the run or wait.
    With a daemon running, it runs them now; without one, when `orchestrator daemon` starts.

    \b
    Example:
      orchestrator tasks clear 20240601T120000Z-3fa2c1 train
    """
    import anyio

    from orchestrator.cli.daemonlink import daemon_or_locally
    from orchestrator.cli.dags import load_bag_quietly
    from orchestrator.cli.output import echo_json
    from orchestrator.cli.runs import read_run

    settings = load_cli_settings()
    downstream = not only_named
    anyio.run(read_run, settings, run_id)  # an unknown run id gets the close matches
    cleared, via = daemon_or_locally(
        settings,
        command=f"orchestrator tasks clear {run_id}",
        ask=lambda holder: _clear_through(settings, holder, run_id, task_ids, downstream),
        prepare=lambda: load_bag_quietly(settings),
        locally=lambda bag: _clear_locally(settings, bag, run_id, task_ids, downstream),
    )
    if as_json:
        listed = [{"task_id": task_id, "map_index": index} for task_id, index in cleared]
        echo_json({"run_id": run_id, "via": via, "downstream": downstream, "cleared": listed})
    else:
        click.echo(clear_message(run_id, cleared, via))


def _clear_through(
    settings: Settings, holder: Holder, run_id: str, task_ids: tuple[str, ...], downstream: bool
) -> tuple[Cleared, str]:
    from orchestrator.cli.daemonlink import ask_daemon

    request = {"op": "clear", "run_id": run_id, "task_ids": list(task_ids)}
    reply = ask_daemon(settings, holder, {**request, "downstream": downstream})
    return [(str(task_id), int(index)) for task_id, index in reply["cleared"]], "daemon"


def _clear_locally(
    settings: Settings, bag: DagBag, run_id: str, task_ids: tuple[str, ...], downstream: bool
) -> tuple[Cleared, str]:
    import anyio

    return anyio.run(_clear_in_store, settings, bag, run_id, task_ids, downstream), "store"


async def _clear_in_store(
    settings: Settings, bag: DagBag, run_id: str, task_ids: tuple[str, ...], downstream: bool
) -> Cleared:
    """No daemon runs: clear in the store; the next daemon picks the run up and runs them."""
    import time

    from orchestrator.scheduling.run_edits import clear_stored_run, stored_run
    from orchestrator.store import open_store

    async with open_store(settings.state_dir, synchronous=settings.synchronous) as store:
        record = await stored_run(store, run_id)
        keys, _ = await clear_stored_run(
            store, bag, record, task_ids, downstream=downstream, now=time.time()
        )
    return [(task_id, index) for _, task_id, index in keys]


def clear_message(run_id: str, cleared: Cleared, via: str) -> str:
    """What was cleared, and when it runs."""
    from orchestrator.cli.display import task_label

    if not cleared:
        return f"nothing to clear in run {run_id}: none of those tasks has finished yet"
    names = ", ".join(task_label(task_id, index) for task_id, index in cleared)
    what = f"cleared {len(cleared)} task instance{'s' if len(cleared) > 1 else ''} of run "
    if via == "daemon":
        return f"{what}{run_id}: {names}\nthe daemon runs them now"
    return (
        f"{what}{run_id}: {names}\nno daemon is running: they run when `orchestrator daemon` starts"
    )
