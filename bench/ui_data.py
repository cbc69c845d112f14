"""A state directory the size of a busy year, and how fast the web UI's reads are on it.

    .venv/bin/python bench/ui_data.py [--runs 10000] [--task-instances 100000] [--repeat 5]

`seed_ui_data` fills a state directory through the store's own schema (migrated by
`open_store`) with plain `executemany` INSERTs in one transaction: 10,000 runs and 100,000 task
instances take a few seconds, where committing runs one batch at a time would take minutes.
The layout is fixed, so tests can check the reads against it exactly:

- DAG `wide` has `wide_tasks` tasks and `wide_runs` runs spread over the whole period (the
  grid's worst case: 200 tasks x 25 runs);
- the other runs go round-robin to DAGs `dag-1` .. `dag-<n>`, sharing the remaining task
  instances as evenly as they divide;
- runs are queued at even intervals over the 30 days before `NOW`; every tenth failed (its
  last task failed), the newest two are running, the rest succeeded; each finished task
  instance has one try; each run was started by one event.

The printout gives, per read, the median of `--repeat` calls on the UI's connection.
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio

from orchestrator.state import RunState, TaskState
from orchestrator.store import (
    DagRecord,
    RunRecord,
    SqliteStore,
    TaskInstanceRecord,
    TryRecord,
    open_store,
)
from orchestrator.store.records import EventRecord
from orchestrator.store.rows import (
    DAG_COLUMNS,
    RUN_COLUMNS,
    TASK_INSTANCE_COLUMNS,
    TRY_COLUMNS,
    dag_params,
    run_params,
    task_instance_params,
    try_params,
)
from orchestrator.store.waitrows import EVENT_COLUMNS, event_params

NOW = 1_800_000_000.0
DAY = 86_400.0
PERIOD = 30 * DAY
WIDE = "wide"


@dataclass
class UiData:
    """What `seed_ui_data` wrote, oldest run first."""

    dags: list[DagRecord] = field(default_factory=list)
    runs: list[RunRecord] = field(default_factory=list)
    task_instances: list[TaskInstanceRecord] = field(default_factory=list)
    tries: list[TryRecord] = field(default_factory=list)
    events: list[EventRecord] = field(default_factory=list)


def layout(
    runs: int, task_instances: int, dags: int, wide_tasks: int, wide_runs: int
) -> list[tuple[str, int]]:
    """Per run, oldest first: its DAG and how many task instances it has."""
    stride = max(runs // max(wide_runs, 1), 1)
    wide = {runs - 1 - step * stride for step in range(min(wide_runs, runs))}
    others = runs - len(wide)
    base, extra = divmod(task_instances - len(wide) * wide_tasks, max(others, 1))
    if base < 1:
        raise ValueError(f"{task_instances} task instances are too few for {runs} runs")
    plan: list[tuple[str, int]] = []
    for index in range(runs):
        if index in wide:
            plan.append((WIDE, wide_tasks))
        else:
            other = index - sum(1 for w in wide if w < index)
            plan.append((f"dag-{other % (dags - 1) + 1}", base + (other < extra)))
    return plan


def build(runs: int, task_instances: int, dags: int, wide_tasks: int, wide_runs: int) -> UiData:
    """The records `seed_ui_data` writes (see the module's docstring for their layout)."""
    data = UiData()
    names = [WIDE, *(f"dag-{n}" for n in range(1, dags))]
    data.dags = [DagRecord(dag_id=name, fileloc=f"/dags/{name}.py") for name in names]
    spacing = PERIOD / runs
    for index, (dag_id, tasks) in enumerate(
        layout(runs, task_instances, dags, wide_tasks, wide_runs)
    ):
        queued = NOW - PERIOD + index * spacing
        state = _run_state(index, runs)
        run = RunRecord(
            run_id=f"{dag_id}-{index:06d}",
            dag_id=dag_id,
            state=state,
            conf={"index": index},
            run_type="event",
            queued_at=queued,
            started_at=queued + 1,
            ended_at=None if state is RunState.RUNNING else queued + tasks + 2,
        )
        data.runs.append(run)
        data.events.append(_event(run, index))
        for number in range(tasks):
            _add_task_instance(data, run, number, tasks)
    return data


def _run_state(index: int, runs: int) -> RunState:
    if index >= runs - 2:
        return RunState.RUNNING
    return RunState.FAILED if index % 10 == 0 else RunState.SUCCESS


def _event(run: RunRecord, index: int) -> EventRecord:
    return EventRecord(
        dag_id=run.dag_id,
        dedup_key=f"file-{index}",
        payload={"path": f"/incoming/{index}.csv"},
        received_at=run.queued_at,
        source="FileTrigger(/incoming)",
        run_id=run.run_id,
    )


def _add_task_instance(data: UiData, run: RunRecord, number: int, tasks: int) -> None:
    task_id = f"task-{number:03d}"
    started = run.queued_at + 1 + number
    if run.state is RunState.RUNNING:
        state = TaskState.SUCCESS if number == 0 else TaskState.NONE
    elif run.state is RunState.FAILED and number == tasks - 1:
        state = TaskState.FAILED
    else:
        state = TaskState.SUCCESS
    finished = state is not TaskState.NONE
    data.task_instances.append(
        TaskInstanceRecord(
            run_id=run.run_id,
            task_id=task_id,
            state=state,
            try_number=1 if finished else 0,
            started_at=started if finished else None,
            ended_at=started + 1 if finished else None,
            error="ValueError: bad row" if state is TaskState.FAILED else None,
        )
    )
    if finished:
        data.tries.append(
            TryRecord(
                run_id=run.run_id,
                task_id=task_id,
                map_index=-1,
                try_number=1,
                state=state,
                started_at=started,
                ended_at=started + 1,
                log_path=f"logs/{run.run_id}/{task_id}/1.log",
            )
        )


async def seed_ui_data(
    state_dir: Path,
    *,
    runs: int = 10_000,
    task_instances: int = 100_000,
    dags: int = 5,
    wide_tasks: int = 200,
    wide_runs: int = 50,
) -> UiData:
    """Fill a new state directory (see the module's docstring); return what was written."""
    async with open_store(state_dir) as store:  # creates and migrates the database
        db_path = Path(store.path)
    data = build(runs, task_instances, dags, wide_tasks, wide_runs)
    await anyio.to_thread.run_sync(_insert, db_path, data)
    return data


def _insert(db_path: Path, data: UiData) -> None:
    tables: list[tuple[str, str, list[tuple[Any, ...]]]] = [
        ("dags", DAG_COLUMNS, [dag_params(dag) for dag in data.dags]),
        ("runs", RUN_COLUMNS, [run_params(run) for run in data.runs]),
        (
            "task_instances",
            TASK_INSTANCE_COLUMNS,
            [task_instance_params(ti) for ti in data.task_instances],
        ),
        ("task_tries", TRY_COLUMNS, [try_params(attempt) for attempt in data.tries]),
        ("events", EVENT_COLUMNS, [event_params(event) for event in data.events]),
    ]
    with closing(sqlite3.connect(db_path, isolation_level=None)) as connection:
        connection.execute("BEGIN IMMEDIATE")
        for table, columns, rows in tables:
            marks = ", ".join("?" for _ in columns.split(","))
            connection.executemany(f"INSERT INTO {table} ({columns}) VALUES ({marks})", rows)
        connection.execute("COMMIT")
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")


Read = Callable[[SqliteStore], Awaitable[Any]]


def reads(data: UiData) -> dict[str, Read]:
    """The reads the UI's pages make, by what they are for."""
    wide_runs = [run for run in data.runs if run.dag_id == WIDE]
    page_before = wide_runs[-min(25, len(wide_runs))].run_id  # the last of page 1
    newest = data.runs[-1]
    wide_done = [run for run in wide_runs if run.state is not RunState.RUNNING][-1].run_id
    failed = [ti for ti in data.task_instances if ti.state is TaskState.FAILED]
    return {
        "run_counts_since (Home, 24 h)": lambda ui: ui.run_counts_since(NOW - DAY),
        "list_task_instances_by_state failed, 50 (Home)": lambda ui: (
            ui.list_task_instances_by_state(TaskState.FAILED, 50)
        ),
        "list_task_instances_by_state failed, page 2": lambda ui: ui.list_task_instances_by_state(
            TaskState.FAILED, 50, before=failed[-min(50, len(failed))].key
        ),
        "recent_runs_by_dag 10 (DAGs)": lambda ui: ui.recent_runs_by_dag(10),
        "grid wide, 25 runs x 200 tasks": lambda ui: ui.grid(WIDE, 25),
        "grid wide, page 2": lambda ui: ui.grid(WIDE, 25, before=page_before),
        "grid dag-1, 25 runs": lambda ui: ui.grid("dag-1", 25),
        "get_run (Run)": lambda ui: ui.get_run(newest.run_id),
        "list_task_instances 200 (Run)": lambda ui: ui.list_task_instances(wide_done),
        "list_run_tries 200 (Run)": lambda ui: ui.list_run_tries(wide_done),
        "list_events run_id (Run)": lambda ui: ui.list_events(run_id=newest.run_id),
        "list_events 50 (Events)": lambda ui: ui.list_events(limit=50),
        "list_events dag-1, 50, page 2 (Events)": lambda ui: ui.list_events(
            dag_id="dag-1", limit=50, before=len(data.events) // 2
        ),
        "list_runs 50 (Runs)": lambda ui: ui.list_runs(limit=50),
        "list_triggers (Triggers)": lambda ui: ui.list_triggers(),
        "list_run_sources (Triggers)": lambda ui: ui.list_run_sources(),
    }


async def time_reads(state_dir: Path, data: UiData, repeat: int) -> list[tuple[str, float]]:
    """Per read, the median milliseconds of `repeat` calls, after one call to warm the cache."""
    figures: list[tuple[str, float]] = []
    async with open_store(state_dir) as store:
        ui = await store.ui_reads()
        for name, read in reads(data).items():
            await read(ui)
            samples = []
            for _ in range(repeat):
                start = time.perf_counter()
                await read(ui)
                samples.append((time.perf_counter() - start) * 1000)
            figures.append((name, statistics.median(samples)))
        start = time.perf_counter()
        size = store.store_size()
        figures.append((f"store_size ({size / 1e6:.1f} MB)", (time.perf_counter() - start) * 1000))
    return figures


async def main(arguments: argparse.Namespace) -> None:
    from machine import machine  # bench/ is on the path when this runs as a script

    print(machine())
    print("command:", " ".join([Path(sys.executable).name, *sys.argv]))
    with tempfile.TemporaryDirectory() as root:
        state_dir = Path(root) / "state"
        start = time.perf_counter()
        data = await seed_ui_data(
            state_dir, runs=arguments.runs, task_instances=arguments.task_instances
        )
        seconds = time.perf_counter() - start
        print(
            f"seeded {len(data.runs)} runs, {len(data.task_instances)} task instances, "
            f"{len(data.tries)} tries, {len(data.events)} events in {seconds:.2f} s"
        )
        print(f"median of {arguments.repeat} calls, ms:")
        for name, milliseconds in await time_reads(state_dir, data, arguments.repeat):
            print(f"  {name:<48} {milliseconds:8.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--task-instances", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    anyio.run(main, parser.parse_args())
