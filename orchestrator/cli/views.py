"""Tables and JSON shapes for `dags list`, `runs list` and `runs show`.

The JSON shapes are the records' own fields (plus a few derived ones such as `duration`), so
a script sees the same names as the Python API.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from rich import box
from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

from orchestrator.cli.display import format_duration, state_text, task_label
from orchestrator.cli.output import (
    damage_notes,
    describe_dag_error,
    display_path,
    marked_damaged,
    one_line,
    shorten,
)
from orchestrator.loading.dagbag import DagBag
from orchestrator.state import TaskState
from orchestrator.store.records import RunRecord, TaskInstanceRecord

_SOURCE_CHARS = 40  # a run trigger's name in the `dags list` table; `--json` has it whole


def make_console() -> Console:
    """A console on stdout that wraps lines only on a terminal.

    Piped or in a log, wrapping at 80 columns would split run ids and log paths, which then
    can no longer be copied or found with grep.
    """
    console = Console()
    if not console.is_terminal:
        console = Console(width=1000)
    return console


def format_time(at: float | None) -> str:
    """A local date and time, `2024-06-01 12:00:03`; empty when unknown."""
    return "" if at is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(at))


def run_duration(run: RunRecord) -> float | None:
    """Seconds from start (or queueing) to end; None while the run is not finished."""
    if run.ended_at is None:
        return None
    return run.ended_at - (run.started_at if run.started_at is not None else run.queued_at)


def task_duration(ti: TaskInstanceRecord) -> float | None:
    if ti.started_at is None or ti.ended_at is None:
        return None
    return ti.ended_at - ti.started_at


# -- dags list ----------------------------------------------------------------------------------


def dags_view(bag: DagBag, paused: set[str]) -> RenderableType:
    """The DAGs of the folder, then the import errors, counted and in red."""
    parts: list[RenderableType] = []
    if bag.dags:
        parts.append(_dags_table(bag, paused))
    else:
        parts.append(Text(f"No DAGs in {display_path(bag.folder)}.", style="yellow"))
    if bag.errors:
        parts.append(Text(f"Import errors ({len(bag.errors)}):", style="bold red"))
        parts.extend(Text(f"  {describe_dag_error(error)}", style="red") for error in bag.errors)
    return Group(*parts)


def _dags_table(bag: DagBag, paused: set[str]) -> Table:
    table = Table(box=box.SIMPLE_HEAD)
    for name in ("dag", "file", "tasks", "paused", "schedule", "runs on", "description"):
        table.add_column(name, overflow="fold")
    for dag_id in sorted(bag.dags):
        dag = bag.dags[dag_id]
        table.add_row(
            dag_id,
            _relative_to(bag.files.get(dag_id, ""), str(bag.folder)),
            str(len(dag.tasks)),
            Text("paused", style="yellow") if dag_id in paused else Text("no"),
            dag.starts.schedule_text,
            ", ".join(shorten(name, _SOURCE_CHARS) for name in dag.starts.source_names) or "-",
            one_line(dag.description),
        )
    return table


def dags_json(bag: DagBag, paused: set[str]) -> dict[str, Any]:
    return {
        "dags": [
            {
                "dag_id": dag_id,
                "file": bag.files.get(dag_id),
                "tasks": len(dag.tasks),
                "description": dag.description,
                "paused": dag_id in paused,
                "schedule": None if dag.starts.schedule is None else dag.starts.schedule_text,
                "runs_on": dag.starts.source_names,
            }
            for dag_id, dag in sorted(bag.dags.items())
        ],
        "import_errors": [
            {"file": error.file, "line": error.line, "message": error.message}
            for error in bag.errors
        ],
    }


def _relative_to(path: str, folder: str) -> str:
    relative = os.path.relpath(path, folder) if path else ""
    return path if relative.startswith("..") else relative


# -- runs list ----------------------------------------------------------------------------------


def runs_table(runs: Sequence[RunRecord]) -> RenderableType:
    """Runs, newest first: id, DAG, state, type, when it was queued, how long it took.

    A run whose conf cannot be read is marked damaged, and a line under the table says why.
    """
    table = Table(box=box.SIMPLE_HEAD)
    for name in ("run", "dag", "state", "type", "queued", "duration"):
        table.add_column(name, no_wrap=True)
    for run in runs:
        table.add_row(
            marked_damaged(run.run_id, run.damaged),
            run.dag_id,
            state_text(run.state),
            run.run_type,
            format_time(run.queued_at),
            format_duration(run_duration(run)),
        )
    return Group(table, *damage_notes([(f"run {run.run_id}", run.damaged) for run in runs]))


def run_json(run: RunRecord) -> dict[str, Any]:
    return {**asdict(run), "duration": run_duration(run)}


# -- runs show ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class TaskDetail:
    """A task instance of a run, with the log file of its last try (None before any try)."""

    task_instance: TaskInstanceRecord
    log_path: str | None


def run_view(run: RunRecord, details: Sequence[TaskDetail]) -> RenderableType:
    """A run's fields, a table of its task instances, and the log of each one's last try."""
    fields = Table.grid(padding=(0, 2))
    for name, value in _run_fields(run):
        fields.add_row(Text(name, style="bold"), value)
    tasks = Table(box=box.SIMPLE_HEAD)
    for name in ("task", "state", "tries", "duration", "error"):
        tasks.add_column(name, overflow="fold")
    for detail in details:
        ti = detail.task_instance
        tasks.add_row(
            marked_damaged(task_label(ti.task_id, ti.map_index), ti.damaged),
            state_text(ti.state),
            f"{ti.try_number}/{ti.max_tries}",
            format_duration(task_duration(ti)),
            # An instance in `none` with a note is waiting (its past), not in error.
            Text(ti.error or "", style="yellow" if ti.state is TaskState.NONE else "red"),
        )
    logs = [
        Text(f"  {task_label(d.task_instance.task_id, d.task_instance.map_index)}: {d.log_path}")
        for d in details
        if d.log_path
    ]
    notes = [(f"run {run.run_id}", run.damaged)] + [
        (
            f"task {task_label(d.task_instance.task_id, d.task_instance.map_index)}",
            d.task_instance.damaged,
        )
        for d in details
    ]
    parts: list[RenderableType] = [fields, tasks, *damage_notes(notes)]
    if logs:
        parts.extend([Text("Logs (last try):", style="bold"), *logs])
    return Group(*parts)


def _run_fields(run: RunRecord) -> list[tuple[str, Text]]:
    return [
        ("run", marked_damaged(run.run_id, run.damaged)),
        ("dag", Text(run.dag_id)),
        ("state", state_text(run.state)),
        ("type", Text(run.run_type)),
        ("conf", Text(json.dumps(run.conf, ensure_ascii=False))),
        ("queued", Text(format_time(run.queued_at))),
        ("started", Text(format_time(run.started_at))),
        ("ended", Text(format_time(run.ended_at))),
        ("duration", Text(format_duration(run_duration(run)))),
    ]


def run_detail_json(run: RunRecord, details: Sequence[TaskDetail]) -> dict[str, Any]:
    return {
        "run": run_json(run),
        "task_instances": [
            {
                **asdict(detail.task_instance),
                "duration": task_duration(detail.task_instance),
                "log_path": detail.log_path,
            }
            for detail in details
        ],
    }
