"""Factories for the store tests: records for a run and its task instances."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from orchestrator.state import RunState
from orchestrator.store import RunRecord, TaskInstanceRecord, WriteBatch

RunAndTasks = tuple[RunRecord, list[TaskInstanceRecord]]


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    """Where a test's store lives; not created, as `open_store` must do that itself."""
    return tmp_path / "state"


@pytest.fixture
def new_run() -> Callable[..., RunAndTasks]:
    """A queued run and one task instance per task id, ready for `WriteBatch.create_run`."""

    def make(
        run_id: str = "run-1",
        *,
        dag_id: str = "etl",
        tasks: Sequence[str] = ("extract", "transform", "load"),
        dedup_key: str | None = None,
        conf: dict[str, Any] | None = None,
        queued_at: float = 1_800_000_000.0,
    ) -> RunAndTasks:
        run = RunRecord(
            run_id=run_id,
            dag_id=dag_id,
            state=RunState.QUEUED,
            conf=conf or {},
            dedup_key=dedup_key,
            queued_at=queued_at,
        )
        return run, [TaskInstanceRecord(run_id=run_id, task_id=task_id) for task_id in tasks]

    return make


@pytest.fixture
def create_run_batch(new_run: Callable[..., RunAndTasks]) -> Callable[..., WriteBatch]:
    """A batch that creates `new_run(...)`'s run and task instances."""

    def make(*args: Any, **kwargs: Any) -> WriteBatch:
        batch = WriteBatch()
        batch.create_run(*new_run(*args, **kwargs))
        return batch

    return make
