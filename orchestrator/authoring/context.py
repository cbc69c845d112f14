"""The run context a task sees (which run, which try, the run's `conf` and the DAG's params),
and what a task may ask of the engine while it runs: `trigger_run`, a run of another DAG."""

from __future__ import annotations

import contextvars
import json
import os
import random
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from typing import Any

from orchestrator.errors import OrchestratorError
from orchestrator.quickinit import quick_init


@quick_init  # one per sensor armed, by the hundred thousand
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
    error: str | None = None  # in a failure or retry callback: why the try failed

    def to_json(self) -> dict[str, Any]:
        """The fields as a dict, for `json.dumps`: `conf` and `params` are shared, not copied.

        `asdict` deep-copied them, field by field, for each try sent to a worker: some 6% of
        the loop's CPU for such a try (cProfile), spent on copies that were only encoded.
        """
        return {name: getattr(self, name) for name in _CONTEXT_FIELDS}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TaskContext:
        return cls(**data)


_CONTEXT_FIELDS = tuple(each.name for each in fields(TaskContext))


@dataclass(frozen=True, kw_only=True)
class RunRequest:
    """A run of `dag_id` that a task asked for; the engine starts it when the try ends."""

    dag_id: str
    run_id: str
    conf: dict[str, Any]


_current: contextvars.ContextVar[TaskContext] = contextvars.ContextVar("orchestrator_task")
_requested: contextvars.ContextVar[list[RunRequest]] = contextvars.ContextVar("orchestrator_runs")


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
    token, requested = _current.set(context), _requested.set([])
    try:
        yield context
    finally:
        _current.reset(token)
        _requested.reset(requested)


def trigger_run(dag_id: str, conf: Mapping[str, Any] | None = None) -> str:
    """Ask for a run of `dag_id` with `conf`, from inside a task; returns the new run's id.

    The run is created when this try ends (succeeds, fails, skips or defers), in the same
    transaction that records how it ended, by the engine that runs the task: the daemon's, or
    `orchestrator run`'s. So a try that dies with its worker starts nothing, and nothing is
    started twice. To wait for the run, defer on `ExternalRunTrigger(dag_id=..., run_id=...)`.
    An unknown or paused DAG, or a conf its params refuse, fails the try with the reason.
    """
    requested = _requested_runs()
    if not isinstance(dag_id, str) or not dag_id:
        raise OrchestratorError(f"trigger_run() needs a DAG id (a string), got {dag_id!r}")
    try:
        checked = json.loads(json.dumps(dict(conf or {}), allow_nan=False))
    except (TypeError, ValueError) as error:
        raise OrchestratorError(
            f"the conf of a run of {dag_id!r} must be a JSON object of plain values: {error}"
        ) from None
    request = RunRequest(dag_id=dag_id, run_id=new_run_id(time.time()), conf=checked)
    requested.append(request)
    return request.run_id


def take_run_requests() -> list[RunRequest]:
    """The runs the current try asked for so far, handed over once (the executor's part)."""
    requested = _requested.get([])
    taken = list(requested)
    requested.clear()
    return taken


def _requested_runs() -> list[RunRequest]:
    try:
        return _requested.get()
    except LookupError:
        raise OrchestratorError(
            "trigger_run() was called outside a running task; call it from inside a task "
            "function (to start a run from outside, use `orchestrator trigger` or the API)"
        ) from None


#: Run ids need to be unique, not secret: a generator seeded from the OS, drawn from without a
#: system call (`secrets` cost 20 us a run at 2,000 webhook runs a second). Its own, so a task
#: that calls `random.seed(42)` in the daemon cannot repeat ids; reseeded in a forked child.
_run_id_bits = random.Random()
os.register_at_fork(after_in_child=_run_id_bits.seed)


def new_run_id(now: float) -> str:
    """The queue time to the second, then 48 random bits: readable, sortable, and unique even
    at thousands of runs a second (24 bits collided in a webhook benchmark)."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))
    return f"{stamp}-{_run_id_bits.getrandbits(48):012x}"
