"""An undecodable JSON value: listings go on with the row marked damaged; db check names it."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from contextlib import closing
from pathlib import Path

from orchestrator.store import RunRecord, TaskInstanceRecord, WriteBatch, open_store

NewRun = Callable[..., tuple[RunRecord, list[TaskInstanceRecord]]]


async def test_a_run_whose_conf_is_not_json_is_listed_as_damaged(
    state_dir: Path, new_run: NewRun
) -> None:
    async with open_store(state_dir) as store:
        batch = WriteBatch()
        for run_id in ("run-1", "run-2"):
            batch.create_run(*new_run(run_id))
        await store.commit(batch)
    with closing(sqlite3.connect(state_dir / "orchestrator.db")) as connection:
        connection.execute("UPDATE runs SET conf = '{broken' WHERE run_id = 'run-1'")
        connection.commit()
    async with open_store(state_dir, readonly=True) as store:
        runs = {run.run_id: run for run in await store.list_runs()}
        assert set(runs) == {"run-1", "run-2"}
        assert runs["run-1"].damaged is not None
        assert runs["run-1"].damaged.startswith("its conf is not valid JSON")
        assert runs["run-1"].conf == {}
        assert runs["run-2"].damaged is None
        rowid = 1
        assert await store.integrity_check() == [f"runs row {rowid}: conf is not valid JSON"]
