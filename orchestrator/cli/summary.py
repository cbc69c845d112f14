"""The end of `orchestrator run`: the outcome, each failed task with its log, the results.

The results of the DAG's last tasks (its leaves) are printed because that is where a pipeline
says what it produced: the ML example returns where the model was written and its metric.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.text import Text

from orchestrator.authoring.dag import DAG
from orchestrator.cli.display import format_duration, state_text, task_label
from orchestrator.state import TaskState
from orchestrator.store.base import Store
from orchestrator.store.records import RunRecord, TaskInstanceRecord

_MAX_VALUE_CHARS = 2000  # a result can be 64 KB of JSON; the summary shows its start


async def print_summary(
    console: Console,
    store: Store,
    dag: DAG,
    run: RunRecord,
    *,
    logs_dir: Path,
    log_paths: Iterable[str] = (),
) -> None:
    """Print the run's state and duration, failures with their logs, and the leaf results."""
    task_instances = await store.list_task_instances(run.run_id)
    console.print()
    console.print(headline(run))
    failure_logs = await _print_failures(console, store, task_instances)
    directory = run_logs_dir([*log_paths, *failure_logs], run.run_id, default=logs_dir)
    console.print(Text(f"Logs: {directory}"))
    _print_results(console, dag.leaves, await store.get_results(run.run_id))


def headline(run: RunRecord, now: float | None = None) -> Text:
    """`Run <id> of <dag>: success in 3.2s`."""
    end = run.ended_at if run.ended_at is not None else (now or time.time())
    start = run.started_at if run.started_at is not None else run.queued_at
    return Text.assemble(
        f"Run {run.run_id} of {run.dag_id}: ",
        state_text(run.state),
        f" in {format_duration(end - start)}",
    )


async def _print_failures(
    console: Console, store: Store, task_instances: Sequence[TaskInstanceRecord]
) -> list[str]:
    """Each failed task's error and the log of its last try; returns those log paths."""
    failed = [ti for ti in task_instances if ti.state is TaskState.FAILED]
    blocked = [ti for ti in task_instances if ti.state is TaskState.UPSTREAM_FAILED]
    logs: list[str] = []
    if failed:
        console.print(Text("Failed tasks:", style="bold red"))
    for ti in failed:
        tries = await store.list_tries(ti.run_id, ti.task_id, ti.map_index)
        label = task_label(ti.task_id, ti.map_index)
        console.print(Text(f"  {label} (try {ti.try_number}/{ti.max_tries}): {ti.error or ''}"))
        if tries:
            logs.append(tries[-1].log_path)
            console.print(Text(f"    log: {tries[-1].log_path}", style="dim"))
    if blocked:
        labels = ", ".join(task_label(ti.task_id, ti.map_index) for ti in blocked)
        console.print(Text(f"Not run because an upstream task failed: {labels}", style="red"))
    return logs


def run_logs_dir(log_paths: Sequence[str], run_id: str, *, default: Path) -> Path:
    """The folder holding the run's logs: the ancestor of its log files named after the run.

    The engine may make the run id safe for a file name, so names are compared on their
    letters and digits. Failing that, the folder the log files share; else `default`.
    """
    wanted = _letters_and_digits(run_id)
    for path in log_paths:
        for parent in Path(path).parents:
            if _letters_and_digits(parent.name) == wanted:
                return parent
    if log_paths:
        return Path(os.path.commonpath([os.path.dirname(path) for path in log_paths]))
    return default


def _letters_and_digits(name: str) -> str:
    return re.sub(r"[\W_]+", "", name)


def leaf_results(leaves: Sequence[str], results: Mapping[tuple[str, int], str]) -> dict[str, Any]:
    """The decoded result of each leaf task; an expanded task gives the list of its results."""
    mapped: dict[str, list[tuple[int, Any]]] = {}
    found: dict[str, Any] = {}
    for (task_id, map_index), text in results.items():
        if task_id not in leaves:
            continue
        if map_index < 0:
            found[task_id] = json.loads(text)
        else:
            mapped.setdefault(task_id, []).append((map_index, json.loads(text)))
    for task_id, items in mapped.items():
        found[task_id] = [value for _, value in sorted(items)]
    return {task_id: found[task_id] for task_id in leaves if found.get(task_id) is not None}


def _print_results(
    console: Console, leaves: Sequence[str], results: Mapping[tuple[str, int], str]
) -> None:
    values = leaf_results(leaves, results)
    if not values:
        return
    console.print(Text("Results:", style="bold"))
    for task_id, value in values.items():
        if isinstance(value, dict):
            console.print(Text(f"  {task_id}:"))
            for key, item in value.items():
                console.print(Text(f"    {key}: {format_value(item)}"))
        else:
            console.print(Text(f"  {task_id}: {format_value(value)}"))


def format_value(value: Any) -> str:
    """A result for people: strings as they are, anything else as compact JSON, shortened."""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    if len(text) > _MAX_VALUE_CHARS:
        return f"{text[:_MAX_VALUE_CHARS]}... ({len(text)} characters)"
    return text
