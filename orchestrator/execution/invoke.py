"""Calling a try's code: the task itself, or its resume target after a deferral.

A task may return `Defer(...)` or call `defer(...)` (which raises `TaskDeferred`) from deep in
its helpers; either way the executor gets back a `Deferral`, the stored form, so the engine
sees one JSON value whether the try ran in a worker process, a thread or the event loop.
"""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any

from orchestrator.authoring.defer import Defer, TaskDeferred, deferral_of
from orchestrator.execution.jobs import TaskJob

if TYPE_CHECKING:
    from orchestrator.authoring.tasks import Task


def _start(task: Task, job: TaskJob) -> Any:
    if job.resume is None:
        return task.run(job.inputs, job.context)
    call = job.resume
    if call.get("target") is None:
        return call.get("event")  # nothing to resume in: the event is the result
    target = task.resume_target(call["target"])
    return task.call_resume(target, job.context, call.get("event"), **call.get("kwargs", {}))


def is_async_job(task: Task, job: TaskJob) -> bool:
    """Whether this try's code is a coroutine function (so it runs in the engine's loop)."""
    if job.resume is None:
        return task.is_async
    if job.resume.get("target") is None:
        return False
    return inspect.iscoroutinefunction(task.resume_target(job.resume["target"]))


def _settled(task: Task, value: Any) -> Any:
    """A returned `Defer` becomes its stored form (so it can cross to the engine as JSON)."""
    if isinstance(value, Defer):
        name = None if value.resume is None else task.resume_name(value.resume)
        return deferral_of(value, name)
    return value


def invoke(task: Task, job: TaskJob) -> Any:
    """Run a sync try (or its resume target); a `Defer` comes back as a `Deferral`."""
    try:
        value = _start(task, job)
    except TaskDeferred as deferred:
        value = deferred.request
    return _settled(task, value)


async def invoke_async(task: Task, job: TaskJob) -> Any:
    """`invoke` for coroutine functions."""
    try:
        value = await _start(task, job)
    except TaskDeferred as deferred:
        value = deferred.request
    return _settled(task, value)
