"""A state directory with two rows in every table that holds JSON, and a way to damage one.

```python
await fill_state(state_dir)
damage(state_dir, DAMAGES["runs.conf"])   # one JSON value of run-1 made unreadable
```

Every row belongs to DAG `etl`, which no test loads: an engine opened on this state leaves
its runs alone (the DAG is not loaded), so listings see exactly these rows.
"""

from __future__ import annotations

import sqlite3
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

from orchestrator.state import RunState, TaskState
from orchestrator.store import (
    RunRecord,
    TaskInstanceRecord,
    TokenRecord,
    TriggerRecord,
    TryRecord,
    WebhookRecord,
    WriteBatch,
    open_store,
)
from orchestrator.store.records import EventRecord, RunSourceRecord

AT = 1_800_000_000.0
RUNS = ("run-1", "run-2")


@dataclass(frozen=True)
class Damage:
    """One JSON value of the first row of a table, replaced by `text`."""

    table: str
    column: str
    where: str  # picks the first row (run-1, event 1, files-1, hook-1)
    text: str
    key: str  # how `db check` names the row


_RUN_1 = "run_id = 'run-1'"
_TI_KEY = "run_id='run-1', task_id='wait', map_index=-1"

#: Each way a value is damaged: not JSON at all, or JSON of a shape its reader cannot use.
DAMAGES = {
    "runs.conf": Damage("runs", "conf", _RUN_1, "{broken", "run_id='run-1'"),
    "runs.conf-shape": Damage("runs", "conf", _RUN_1, "[1, 2]", "run_id='run-1'"),
    "task_instances.next_call": Damage("task_instances", "next_call", _RUN_1, "{", _TI_KEY),
    "triggers.kwargs": Damage("triggers", "kwargs", _RUN_1, '"text"', _TI_KEY),
    "triggers.cursor": Damage("triggers", "cursor", _RUN_1, "{'a': 1}", _TI_KEY),
    "events.payload": Damage("events", "payload", "event_id = 1", "nul", "event_id=1"),
    "run_sources.kwargs": Damage(
        "run_sources", "kwargs", "source = 'files-1'", "1", "dag_id='etl', source='files-1'"
    ),
    "run_sources.cursor": Damage(
        "run_sources", "cursor", "source = 'files-1'", "[", "dag_id='etl', source='files-1'"
    ),
    "webhooks.filters": Damage(
        "webhooks", "filters", "name = 'hook-1'", '[["ref"]]', "name='hook-1'"
    ),
    "webhooks.conf_map": Damage("webhooks", "conf_map", "name = 'hook-1'", "{]", "name='hook-1'"),
    "task_results.value": Damage("task_results", "value", _RUN_1, "'done'", _TI_KEY),
}


async def fill_state(state_dir: Path) -> None:
    """Two readable rows in every table with a JSON column (and one token), all of DAG etl."""
    batch = WriteBatch()
    for number, run_id in enumerate(RUNS, start=1):
        _add_run(batch, run_id, number)
        batch.add_events([_event(run_id, number)])
        batch.put_run_source(_source(number))
        batch.put_webhook(_webhook(number))
    batch.put_token(
        TokenRecord(token_id="tok-1", name="ci", scope="read", secret_hash="0" * 64, created_at=AT)
    )
    async with open_store(state_dir) as store:
        await store.commit(batch)
    log = state_dir / "wait.log"
    log.write_text("waiting for the file\n")
    batch = WriteBatch()
    for run_id in RUNS:
        batch.start_try(
            TryRecord(
                run_id=run_id,
                task_id="wait",
                map_index=-1,
                try_number=1,
                state=TaskState.RUNNING,
                started_at=AT,
                log_path=str(log),
            )
        )
    async with open_store(state_dir) as store:
        await store.commit(batch)


def _add_run(batch: WriteBatch, run_id: str, number: int) -> None:
    run = RunRecord(
        run_id=run_id, dag_id="etl", state=RunState.QUEUED, conf={"n": number}, queued_at=AT
    )
    batch.create_run(run, [TaskInstanceRecord(run_id=run_id, task_id="wait")])
    key = (run_id, "wait", -1)
    batch.set_next_call(key, '{"classpath": "triggers.time.TimeTrigger", "kwargs": {}}')
    batch.add_trigger(
        TriggerRecord(
            run_id=run_id,
            task_id="wait",
            map_index=-1,
            classpath="triggers.time.TimeTrigger",
            kwargs={"moment": AT + 3600},
            created_at=AT,
            cursor={"seen": number},
        )
    )
    batch.save_result(key, '"done"')


def _event(run_id: str, number: int) -> EventRecord:
    return EventRecord(
        dag_id="etl",
        dedup_key=f"/data/{number}.csv",
        payload={"path": f"/data/{number}.csv"},
        received_at=AT,
        source=f"files-{number}",
        run_id=run_id,
    )


def _source(number: int) -> RunSourceRecord:
    return RunSourceRecord(
        dag_id="etl",
        source=f"files-{number}",
        classpath="triggers.file.FileTrigger",
        kwargs={"directory": "/data"},
        armed_at=AT,
        cursor={"seen": number},
    )


def _webhook(number: int) -> WebhookRecord:
    return WebhookRecord(
        name=f"hook-{number}",
        dag_id="etl",
        secret_env="HOOK_SECRET",
        filters=[("ref", "refs/heads/main")],
        conf_map={"sha": "after"},
        created_at=AT,
    )


def damage(state_dir: Path, *damages: Damage) -> None:
    """Write each damaged value straight into the SQLite file, as a disk error or a hand edit."""
    with closing(sqlite3.connect(state_dir / "orchestrator.db")) as connection:
        for one in damages:
            sql = f"UPDATE {one.table} SET {one.column} = ? WHERE {one.where}"
            assert connection.execute(sql, (one.text,)).rowcount == 1, one
        connection.commit()


def check_line(one: Damage) -> str:
    """The start of what `db check` says about the row `one` damaged."""
    return f"{one.table} ({one.key}): {one.column} is not"
