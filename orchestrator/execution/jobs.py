"""What the scheduler hands the executor (a `TaskJob`) and what it gets back (`TaskOutcome`)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from orchestrator.authoring.context import RunRequest, TaskContext


@dataclass(frozen=True, kw_only=True)
class TaskJob:
    """One try of one task instance. Everything in it is JSON-safe, so it crosses processes."""

    dag_id: str
    task_id: str
    fileloc: str  # the DAG file: a worker process imports it to find the task
    context: TaskContext  # carries run_id, map_index, try_number and the log path
    inputs: dict[str, Any]  # resolved inputs: {"args": [...], "kwargs": {...}, "mapped": {...}}
    timeout: float | None  # seconds; the try is stopped (its worker killed) after it
    in_process: bool  # run in the engine process: a thread for sync code
    result_max_bytes: int
    # The try's log never grows past this while it runs (`task_log_max_bytes`); 0: no cap.
    log_max_bytes: int = 0
    # Set when the try resumes after a deferral: {"target": name or None, "kwargs": {...},
    # "event": the trigger event's payload}. Then the resume target runs instead of the task.
    resume: dict[str, Any] | None = None
    # Marks every process of the try (`execution.try_processes`), so that whatever the try
    # started can be found and stopped, even after the daemon that ran it died. Empty: none.
    process_token: str = ""
    # Where the try marks that its code begins (`begun_tries`), for recovery to count it.
    begun_journal: str = ""


class Outcome(StrEnum):
    SUCCESS = "success"
    FAILED = "failed"
    FAILED_FINAL = "failed_final"  # the task raised `Fail`: no retry, whatever tries are left
    SKIPPED = "skipped"  # the task raised `Skip`
    DEFERRED = "deferred"  # the task returned `Defer(...)`: wait on a trigger without a slot


@dataclass(frozen=True, kw_only=True)
class TaskOutcome:
    """How a try ended. The executor never raises for a task's own failure: it reports it."""

    status: Outcome
    result_json: str | None = None  # on success: the result as JSON text, already size-checked
    error: str | None = None  # one line for the user: "ValueError: bad row", "timed out after 5s"
    deferral_json: str | None = None  # when deferred: the `Deferral` as JSON text
    # Runs of other DAGs the try asked for (`trigger_run`), whatever its status: the engine
    # creates them in the transaction that records this outcome.
    run_requests: tuple[RunRequest, ...] = ()
