"""Operators: tasks written as classes, and the shell-command task.

```python
class Upload(BaseOperator):
    def __init__(self, *, bucket: str, **options):
        super().__init__(**options)
        self.bucket = bucket

    def execute(self, context):
        ...
```
"""

from __future__ import annotations

import inspect
import json
import os
import subprocess
from collections.abc import Callable, Mapping
from typing import IO, Any, cast

from orchestrator.authoring.context import TaskContext
from orchestrator.authoring.tasks import Task
from orchestrator.errors import TaskError


class BaseOperator(Task):
    """Subclass and implement `execute(context)` (sync, or `async def` to run in the loop)."""

    def execute(self, context: TaskContext) -> Any:
        raise NotImplementedError(f"{type(self).__name__} must implement execute(context)")

    @property
    def is_async(self) -> bool:
        return inspect.iscoroutinefunction(self.execute)

    def run(self, inputs: dict[str, Any], context: TaskContext) -> Any:
        return self.execute(context)

    # Resuming after `Defer(trigger, resume="execute_complete")`: a method of the operator,
    # called as `method(context, event, **kwargs)`, Airflow's convention.

    def resume_name(self, target: str | Callable[..., Any]) -> str:
        name = target if isinstance(target, str) else getattr(target, "__name__", "")
        if isinstance(target, str) or getattr(target, "__self__", None) is self:
            if callable(getattr(self, name, None)):
                return name
        raise TaskError(
            f"{type(self).__name__} cannot resume in {target!r}: give the name of one of its "
            "methods (or the bound method itself)"
        )

    def resume_target(self, name: str) -> Callable[..., Any]:
        method = getattr(self, name, None)
        if not callable(method):
            raise TaskError(f"{type(self).__name__} has no method {name!r} to resume in")
        return cast(Callable[..., Any], method)

    def call_resume(
        self, target: Callable[..., Any], context: TaskContext, event: Any, **kwargs: Any
    ) -> Any:
        return target(context, event, **kwargs)


class Shell(BaseOperator):
    """Run a shell command; fail on a non-zero exit; the result is the last line of stdout.

    The command sees the run in its environment: `ORCHESTRATOR_DAG_ID`, `ORCHESTRATOR_RUN_ID`,
    `ORCHESTRATOR_TASK_ID`, `ORCHESTRATOR_TRY_NUMBER`, and `ORCHESTRATOR_CONF` /
    `ORCHESTRATOR_PARAMS` as JSON. Output goes to the try's log. It runs in a worker process
    like any sync task, so a timeout or a cancel kills it with its whole process group.
    """

    def __init__(
        self,
        command: str,
        *,
        task_id: str,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        **options: Any,
    ) -> None:
        super().__init__(task_id=task_id, **options)
        if not isinstance(command, str) or not command.strip():
            raise ValueError(f"Shell task {task_id!r} needs a non-empty command string")
        self.command = command
        self.env = dict(env or {})
        self.cwd = cwd

    def execute(self, context: TaskContext) -> str:
        env = {**os.environ, **self.env, **_run_environment(context)}
        # The `with` closes the pipe (an unclosed one is a ResourceWarning) and reaps the child.
        with subprocess.Popen(
            ["/bin/sh", "-c", self.command],
            cwd=self.cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=None,  # the try's log (the worker points fd 2 at it)
            text=True,
            errors="replace",  # a command printing bytes that are not UTF-8 still succeeds
        ) as process:
            try:
                last = _echo_lines(process.stdout)
            except BaseException:
                process.kill()  # never leave the command running behind a failed task
                raise
            code = process.wait()
        if code != 0:
            raise TaskError(f"command exited with code {code}: {self.command}")
        return last


def _echo_lines(stdout: IO[str] | None) -> str:
    """Copy the command's output into the try's log; return its last non-blank line."""
    last = ""
    for line in stdout or ():
        print(line, end="", flush=True)
        if line.strip():
            last = line.rstrip("\n")
    return last


def _run_environment(context: TaskContext) -> dict[str, str]:
    return {
        "ORCHESTRATOR_DAG_ID": context.dag_id,
        "ORCHESTRATOR_RUN_ID": context.run_id,
        "ORCHESTRATOR_TASK_ID": context.task_id,
        "ORCHESTRATOR_TRY_NUMBER": str(context.try_number),
        "ORCHESTRATOR_CONF": json.dumps(context.conf),
        "ORCHESTRATOR_PARAMS": json.dumps(context.params),
    }
