"""Deferral: a running task hands its wait to a trigger, gives up its slot, and resumes later.

```python
@task
def train_remotely(context):
    job_id = submit_training_job()
    return Defer(JobFinishedTrigger(job_id=job_id), resume=collect, kwargs={"job_id": job_id})

def collect(event, job_id):
    return {"job": job_id, "model": event["model_uri"]}
```

A task says what happens next with a value: it returns `Defer(...)` (or calls `defer(...)`,
which raises, for code deep in helpers). The engine stores the trigger and the resume target
with the task instance in one transaction, releases the slot, and runs the trigger in its
event loop. When the trigger fires, the task is scheduled again and, on a slot, `resume` is
called with the event's payload. Without `resume`, the task succeeds with the payload as its
result and never takes a slot again.

`Deferral` is the stored form: plain JSON, the same in a worker process and in the store.
"""

from __future__ import annotations

import inspect
import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from orchestrator.authoring.retry import Duration, seconds
from orchestrator.errors import TaskError, TriggerLoadError
from orchestrator.quickinit import quick_init
from triggers.base import Trigger, check_json_safe

OnTimeout = Literal["fail", "skip"]


@dataclass(frozen=True)
class Defer:
    """Wait for `trigger` without a slot; then call `resume` with the event (or finish with it).

    `resume` is a method of the operator (by name or bound method), or a module-level function
    of the DAG file; it is called as `resume(event, **kwargs)` (operators:
    `method(context, event, **kwargs)`, as in Airflow). `timeout` fails the task (or skips it,
    with `on_timeout="skip"`) if no event came in time.
    """

    trigger: Trigger
    resume: str | Callable[..., Any] | None = None
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    timeout: Duration | None = None
    on_timeout: OnTimeout = "fail"


class TaskDeferred(Exception):
    """Raised by `defer()`: the task is deferring. The engine catches it; never catch it."""

    def __init__(self, request: Defer) -> None:
        super().__init__(f"deferred to {request.trigger.describe()}")
        self.request = request


def defer(
    trigger: Trigger,
    *,
    resume: str | Callable[..., Any] | None = None,
    kwargs: Mapping[str, Any] | None = None,
    timeout: Duration | None = None,
    on_timeout: OnTimeout = "fail",
) -> None:
    """Defer from anywhere in a task's code (Airflow's `self.defer(...)`): raises `TaskDeferred`."""
    raise TaskDeferred(Defer(trigger, resume, dict(kwargs or {}), timeout, on_timeout))


@quick_init  # one is made for each sensor deferring at start
@dataclass(frozen=True, kw_only=True)
class Deferral:
    """A `Defer` as stored: the trigger's classpath and JSON kwargs, and how to resume."""

    classpath: str
    kwargs: dict[str, Any]
    resume: str | None = None
    resume_kwargs: dict[str, Any] = field(default_factory=dict)
    timeout: float | None = None
    on_timeout: OnTimeout = "fail"

    def to_json(self) -> str:
        return json.dumps(self.__dict__, allow_nan=False, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> Deferral:
        """Parse a stored deferral; `ValueError` if it is not one."""
        data = json.loads(text)
        if not isinstance(data, dict) or not isinstance(data.get("classpath"), str):
            raise ValueError(f"not a deferral: {text[:200]}")
        return cls(**data)


def deferral_of(request: Defer, resume_name: str | None) -> Deferral:
    """The stored form of `request`; `TaskError` with the reason if it cannot be stored."""
    if not isinstance(request.trigger, Trigger):
        raise TaskError(f"Defer needs a Trigger, got {type(request.trigger).__name__}")
    try:
        classpath, kwargs = request.trigger.serialize()
        resume_kwargs = dict(request.kwargs)
        if resume_kwargs:  # none, for a sensor: nothing to check
            check_json_safe(resume_kwargs, what="the kwargs passed to the resume target")
    except TriggerLoadError as error:
        raise TaskError(str(error)) from None
    timeout = seconds(request.timeout)
    if timeout is not None and not (math.isfinite(timeout) and timeout > 0):
        raise TaskError(f"a deferral's timeout must be a positive duration, got {timeout!r}")
    if request.on_timeout not in ("fail", "skip"):
        raise TaskError(f"on_timeout must be 'fail' or 'skip', got {request.on_timeout!r}")
    return Deferral(
        classpath=classpath,
        kwargs=kwargs,
        resume=resume_name,
        resume_kwargs=resume_kwargs,
        timeout=timeout,
        on_timeout=request.on_timeout,
    )


def function_name(target: str | Callable[..., Any], namespace: Mapping[str, Any]) -> str:
    """The name a resume function is stored under: its qualified name in the DAG file."""
    name = target if isinstance(target, str) else getattr(target, "__qualname__", "")
    if not name or "<locals>" in name or find_function(name, namespace) is None:
        raise TaskError(
            f"cannot resume in {target!r}: give a function defined at the top level of the "
            "DAG file (or its name), so a restarted engine can find it again"
        )
    return name


def find_function(name: str, namespace: Mapping[str, Any]) -> Callable[..., Any] | None:
    """The function `name` (a qualified name, `Class.method` allowed) in a module's globals."""
    first, *rest = name.split(".")
    value: Any = namespace.get(first)
    for part in rest:
        value = getattr(value, part, None)
    return value if callable(value) else None


def call_with_context(function: Callable[..., Any], context: Any, *args: Any, **kwargs: Any) -> Any:
    """Call `function`, passing `context=` too when its signature asks for it."""
    try:
        wants = "context" in inspect.signature(function).parameters
    except (TypeError, ValueError):
        wants = False
    if wants and "context" not in kwargs:
        kwargs["context"] = context
    return function(*args, **kwargs)
