"""The run context a task sees: which run, which try, the run's `conf` and the DAG's params."""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

from orchestrator.errors import OrchestratorError


@dataclass(frozen=True, kw_only=True)
class TaskContext:
    """Everything a running task may ask about itself. JSON-safe, so it crosses to workers."""

    dag_id: str
    run_id: str
    task_id: str
    map_index: int = -1  # -1 for a task that is not expanded
    try_number: int = 1
    max_tries: int = 1
    conf: dict[str, Any] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    logical_date: float | None = None  # scheduled and backfill runs: their data interval's start
    data_interval_end: float | None = None  # ... and its end (seconds since the epoch)
    log_path: str = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TaskContext:
        return cls(**data)


_current: contextvars.ContextVar[TaskContext] = contextvars.ContextVar("orchestrator_task")


def get_current_context() -> TaskContext:
    """The context of the task whose code is running now.

    Works in worker processes, in-process threads and async tasks alike.
    """
    try:
        return _current.get()
    except LookupError:
        raise OrchestratorError(
            "get_current_context() was called outside a running task; "
            "call it from inside a task function"
        ) from None


@contextmanager
def task_context(context: TaskContext) -> Iterator[TaskContext]:
    """Make `context` current for the code run inside the block."""
    token = _current.set(context)
    try:
        yield context
    finally:
        _current.reset(token)
