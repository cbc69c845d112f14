"""What a try produced, as a `TaskOutcome`: its result as size-checked JSON, or why it failed.

The same functions run in worker processes and in the engine process (threads and async
tasks), so a result or an exception becomes the same outcome whichever way the task ran.
"""

from __future__ import annotations

import dataclasses
import json
import traceback
from collections.abc import Callable
from typing import Any, TextIO

from orchestrator.authoring.context import take_run_requests
from orchestrator.authoring.defer import Deferral
from orchestrator.authoring.tasks import Fail, Skip
from orchestrator.errors import ResultError, error_line
from orchestrator.execution.jobs import Outcome, TaskJob, TaskOutcome


def encode_result(value: Any, *, task_id: str, limit: int) -> str:
    """`value` as compact JSON text of at most `limit` UTF-8 bytes, or a `ResultError`.

    Results live in the store and travel to downstream tasks, so they must be plain JSON and
    small; large data belongs in a file or object store, passed on by its path or URI.
    """
    try:
        text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError, RecursionError) as error:
        raise ResultError(
            f"result of task {task_id!r} is not JSON-serialisable ({error_line(error)}); return "
            "plain lists/dicts/str/numbers, or write large data to a file and return its path"
        ) from None
    # Each character is at most 4 UTF-8 bytes: most results skip the encoding entirely.
    if len(text) * 4 > limit and (size := len(text.encode())) > limit:
        raise ResultError(
            f"result of task {task_id!r} is {size} bytes of JSON, over the limit of {limit} "
            "bytes (result_max_bytes); pass large data by reference: write it to a file or "
            "object store and return its path or URI"
        )
    return text


def decode_result(text: str) -> Any:
    """The value a result's JSON text stands for (the inverse of `encode_result`)."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise ResultError(f"a stored result is not valid JSON ({error}): {text[:80]!r}") from None


def outcome_of_value(value: Any, job: TaskJob, log: TextIO) -> TaskOutcome:
    """A success carrying `value` as JSON, or a failure if the value cannot be stored.

    A `Deferral` (what `invoke` makes of a returned `Defer`) is not a result: the try defers.
    Like `outcome_of_error`, it carries the runs the try asked for (`trigger_run`).
    """
    return _with_run_requests(_outcome_of_value(value, job, log))


def _outcome_of_value(value: Any, job: TaskJob, log: TextIO) -> TaskOutcome:
    if isinstance(value, Deferral):
        log.write(f"deferred: waiting on {value.classpath} {value.kwargs}\n")
        return TaskOutcome(status=Outcome.DEFERRED, deferral_json=value.to_json())
    try:
        text = encode_result(value, task_id=job.task_id, limit=job.result_max_bytes)
    except ResultError as error:
        log.write(f"{error}\n")
        return TaskOutcome(status=Outcome.FAILED, error=str(error))
    return TaskOutcome(status=Outcome.SUCCESS, result_json=text)


def outcome_of_error(error: BaseException, log: TextIO) -> TaskOutcome:
    """How a task's exception ends its try; the full traceback goes to the try's log.

    `Skip` is not a failure but a decision, so it gets no traceback. `SystemExit` is reported
    as such because a task that calls `sys.exit()` must not take its worker down with it.
    """
    return _with_run_requests(_outcome_of_error(error, log))


def _with_run_requests(outcome: TaskOutcome) -> TaskOutcome:
    requests = take_run_requests()
    return dataclasses.replace(outcome, run_requests=tuple(requests)) if requests else outcome


def _outcome_of_error(error: BaseException, log: TextIO) -> TaskOutcome:
    if isinstance(error, Skip):
        reason = " ".join(str(error).split()) or None
        log.write(f"task skipped{f': {reason}' if reason else ''}\n")
        return TaskOutcome(status=Outcome.SKIPPED, error=reason)
    log.write("".join(traceback.format_exception(error)))
    if isinstance(error, SystemExit):
        return TaskOutcome(status=Outcome.FAILED, error=f"task called sys.exit({error.code!r})")
    final = isinstance(error, Fail)
    return TaskOutcome(
        status=Outcome.FAILED_FINAL if final else Outcome.FAILED, error=error_line(error)
    )


def outcome_of_call(call: Callable[[], Any], job: TaskJob, log: TextIO) -> TaskOutcome:
    """Run a task's synchronous code and report how it ended; never raises for its faults.

    `KeyboardInterrupt` still propagates: it is the operator stopping the whole process.
    """
    try:
        value = call()
    except KeyboardInterrupt:
        raise
    except BaseException as error:
        return outcome_of_error(error, log)
    return outcome_of_value(value, job, log)
