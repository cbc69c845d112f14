"""`orchestrator trigger` and `orchestrator backfill`: start runs, through the daemon if one runs.

Through the running daemon, or with none, by this process under the state directory's lock
(see `orchestrator.cli.daemonlink`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from orchestrator.cli.daemonlink import ask_daemon, daemon_or_locally, load_dag
from orchestrator.cli.options import load_cli_settings, settings_options
from orchestrator.cli.run import parse_conf

if TYPE_CHECKING:
    from orchestrator.authoring.dag import DAG
    from orchestrator.config import Settings
    from orchestrator.daemon.state_lock import Holder
    from orchestrator.loading.dagbag import DagBag
    from orchestrator.store.records import RunRecord


def _paused_message(dag_id: str) -> str:
    return (
        f"DAG {dag_id!r} is paused, so no run of it starts; unpause it first "
        f"(`orchestrator dags unpause {dag_id}`)"
    )


# -- trigger -----------------------------------------------------------------------------------


@click.command("trigger")
@click.argument("dag_id")
@click.option(
    "--conf",
    "conf_text",
    metavar="JSON",
    help="The run's conf, a JSON object the tasks can read (context.conf).",
)
@click.option(
    "--dedup-key",
    metavar="KEY",
    help="Start at most one run per KEY: a second trigger with it is refused, naming the run.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@settings_options
def trigger_command(
    dag_id: str, conf_text: str | None, dedup_key: str | None, as_json: bool
) -> None:
    """Start a run of a DAG and return at once (the daemon runs it).

    With a daemon running, the run starts now. Without one, the run is queued in the state
    directory and starts when `orchestrator daemon` does (`orchestrator run DAG_ID` runs one
    in the foreground instead). A paused DAG refuses new runs.

    \b
    Example:
      orchestrator trigger retrain --conf '{"path": "data/new.csv"}' --dedup-key new.csv
    """
    from orchestrator.cli.output import echo_json

    conf = parse_conf(conf_text)
    settings = load_cli_settings()
    run_id, via = daemon_or_locally(
        settings,
        command=f"orchestrator trigger {dag_id}",
        ask=lambda holder: _trigger_through(settings, holder, dag_id, conf, dedup_key),
        prepare=lambda: load_dag(settings, dag_id),
        locally=lambda _: (_queue_locally(settings, dag_id, conf, dedup_key), "store"),
    )
    if as_json:
        echo_json({"run_id": run_id, "via": via})
    elif via == "daemon":
        click.echo(f"run {run_id} started")
    else:
        click.echo(
            f"run {run_id} queued: no daemon is running; it starts when `orchestrator daemon` "
            f"starts (or use `orchestrator run {dag_id}` to run it now)"
        )


def _trigger_through(
    settings: Settings, holder: Holder, dag_id: str, conf: dict[str, Any], dedup_key: str | None
) -> tuple[str, str]:
    request = {"op": "trigger", "dag_id": dag_id, "conf": conf, "dedup_key": dedup_key}
    return str(ask_daemon(settings, holder, request)["run_id"]), "daemon"


def _queue_locally(
    settings: Settings, dag_id: str, conf: dict[str, Any], dedup_key: str | None
) -> str:
    import anyio

    return anyio.run(_queue_run, settings, dag_id, conf, dedup_key)


async def _queue_run(
    settings: Settings, dag_id: str, conf: dict[str, Any], dedup_key: str | None
) -> str:
    """Write a queued run into the store; the next daemon picks it up with the unfinished runs."""
    from orchestrator.errors import DuplicateRunError, RunError
    from orchestrator.store import WriteBatch, open_store

    record = _queued_run(dag_id, conf, dedup_key)
    async with open_store(settings.state_dir, synchronous=settings.synchronous) as store:
        dag = await store.get_dag(dag_id)
        if dag is not None and dag.is_paused:
            raise RunError(_paused_message(dag_id))
        batch = WriteBatch()
        batch.create_run(record, [])
        try:
            await store.commit(batch)
        except DuplicateRunError as error:
            raise RunError(
                f"DAG {dag_id} already has run {error.existing_run_id} for dedup key "
                f"{dedup_key!r}, so no second run was queued "
                f"(`orchestrator runs show {error.existing_run_id}`)"
            ) from None
    return record.run_id


def _queued_run(dag_id: str, conf: dict[str, Any], dedup_key: str | None) -> RunRecord:
    import time

    from orchestrator.authoring.context import new_run_id
    from orchestrator.state import RunState
    from orchestrator.store.records import RunRecord

    now = time.time()
    return RunRecord(
        run_id=new_run_id(now),
        dag_id=dag_id,
        state=RunState.QUEUED,
        conf=conf,
        run_type="manual",
        dedup_key=dedup_key,
        queued_at=now,
    )


# -- backfill ----------------------------------------------------------------------------------


@click.command("backfill")
@click.argument("dag_id")
@click.option(
    "--start",
    "start_text",
    required=True,
    metavar="DATE",
    help="Cover the intervals starting at or after DATE: '2024-01-01' or '2024-01-01T03:00', "
    "in the DAG's timezone unless it has an offset ('+01:00').",
)
@click.option(
    "--end",
    "end_text",
    required=True,
    metavar="DATE",
    help="... and at or before DATE (inclusive), in the same form.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@settings_options
@click.pass_context
def backfill_command(
    ctx: click.Context, dag_id: str, start_text: str, end_text: str, as_json: bool
) -> None:
    """Queue a run for every interval of a DAG's schedule between two dates.

    Intervals that already have a run (scheduled, or an earlier backfill) are skipped. With a
    daemon running, the runs are handed to it and the command returns at once. Without one,
    they run here in the foreground and a summary follows: exit code 0 when every run
    succeeded, 1 otherwise.

    \b
    Example:
      orchestrator backfill nightly_report --start 2024-01-01 --end 2024-01-31
    """
    from orchestrator.scheduling.schedule_ticks import backfill

    settings = load_cli_settings()
    bag, dag = load_dag(settings, dag_id)
    start, end = _parse_range(dag, start_text, end_text)
    backfill(dag, start, end)  # a DAG without a schedule, or end before start, fails here
    code = daemon_or_locally(
        settings,
        command=f"orchestrator backfill {dag_id}",
        ask=lambda holder: _backfill_through(settings, holder, dag_id, start, end, as_json),
        prepare=lambda: None,
        locally=lambda _: _backfill_here(settings, bag, dag, start, end, as_json),
    )
    ctx.exit(code)


def _parse_range(dag: DAG, start_text: str, end_text: str) -> tuple[float, float]:
    """`--start` and `--end` as epoch seconds; a date without an offset is in the DAG's zone."""
    timezone = dag.starts.timezone
    return _moment(start_text, timezone, "--start"), _moment(end_text, timezone, "--end")


def _moment(text: str, timezone: str, what: str) -> float:
    from orchestrator.authoring.moments import parse_moment
    from orchestrator.errors import RunError

    moment = parse_moment(text, timezone=timezone, what=what)
    if moment is None:  # only for a missing value, which click already refuses
        raise RunError(f"{what} needs a date")
    return moment


def _backfill_through(
    settings: Settings, holder: Holder, dag_id: str, start: float, end: float, as_json: bool
) -> int:
    from orchestrator.cli.exit_codes import EXIT_OK
    from orchestrator.cli.output import echo_json

    request = {"op": "backfill", "dag_id": dag_id, "start": start, "end": end}
    reply = ask_daemon(settings, holder, request)
    run_ids, skipped = list(reply["run_ids"]), int(reply["skipped"])
    if as_json:
        echo_json({"via": "daemon", "run_ids": run_ids, "skipped": skipped})
    else:
        click.echo(_queued_line(len(run_ids), skipped) + "; the daemon runs them")
    return EXIT_OK


def _queued_line(queued: int, skipped: int) -> str:
    return f"queued {queued} runs ({skipped} intervals already had a run)"


def _backfill_here(
    settings: Settings, bag: DagBag, dag: DAG, start: float, end: float, as_json: bool
) -> int:
    """Run the backfill in this process (no daemon runs) and print how each run ended."""
    import anyio

    from orchestrator.cli.exit_codes import EXIT_FAILED, EXIT_OK
    from orchestrator.cli.output import echo_json
    from orchestrator.cli.views import make_console, run_json
    from orchestrator.state import RunState

    records, skipped = anyio.run(_run_backfill, settings, bag, dag.dag_id, start, end, as_json)
    if as_json:
        run_ids = [record.run_id for record in records]
        runs = [run_json(record) for record in records]
        echo_json({"via": "foreground", "run_ids": run_ids, "skipped": skipped, "runs": runs})
    elif records:
        make_console().print(_backfill_table(records, dag.starts.timezone))
    succeeded = all(record.state is RunState.SUCCESS for record in records)
    return EXIT_OK if succeeded else EXIT_FAILED


async def _run_backfill(
    settings: Settings, bag: DagBag, dag_id: str, start: float, end: float, as_json: bool
) -> tuple[list[RunRecord], int]:
    from orchestrator.scheduling.engine import Engine

    async with Engine.open(settings, dagbag=bag, recover=True) as engine:
        run_ids, skipped = await engine.backfill(dag_id, start, end)
        if not as_json:
            where = "; running them here (no daemon is running)" if run_ids else ""
            click.echo(_queued_line(len(run_ids), skipped) + where)
        records = [await engine.wait(run_id) for run_id in run_ids]
    return records, skipped


def _backfill_table(records: list[RunRecord], timezone: str) -> Any:
    """Each backfilled run: its id, the interval it covers, how it ended and how long it took."""
    from rich import box
    from rich.table import Table

    from orchestrator.cli.display import format_duration, state_text
    from orchestrator.cli.views import run_duration

    table = Table(box=box.SIMPLE_HEAD)
    for name in ("run", "logical date", "state", "duration"):
        table.add_column(name, no_wrap=True)
    for record in records:
        table.add_row(
            record.run_id,
            format_moment(record.logical_date, timezone),
            state_text(record.state),
            format_duration(run_duration(record)),
        )
    return table


def format_moment(moment: float | None, timezone: str) -> str:
    """`2024-01-01 00:00 UTC`: a logical date as the DAG's schedule sees it; empty when None."""
    from datetime import datetime

    from orchestrator.authoring.schedules import load_timezone

    if moment is None:
        return ""
    return datetime.fromtimestamp(moment, load_timezone(timezone)).strftime("%Y-%m-%d %H:%M %Z")
