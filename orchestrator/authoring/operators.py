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

import codecs
import copy
import inspect
import json
import os
import select
import subprocess
from collections.abc import Callable, Mapping
from typing import IO, Any, cast

from orchestrator.authoring.context import TaskContext
from orchestrator.authoring.references import iter_refs
from orchestrator.authoring.tasks import Task
from orchestrator.errors import TaskError


class BaseOperator(Task):
    """Subclass and implement `execute(context)` (sync, or `async def` to run in the loop)."""

    def execute(self, context: TaskContext) -> Any:
        raise NotImplementedError(f"{type(self).__name__} must implement execute(context)")

    @property
    def is_async(self) -> bool:
        return inspect.iscoroutinefunction(self.execute)

    @property
    def inputs(self) -> dict[str, Any]:
        """Attributes holding a `@dag` param or another task's output, resolved at run time."""
        held = {name: value for name, value in vars(self).items() if any(iter_refs(value))}
        return {"fields": held} if held else {}

    def run(self, inputs: dict[str, Any], context: TaskContext) -> Any:
        fields = inputs.get("fields")
        if not fields:
            return self.execute(context)
        # A copy holds the run's values: one operator object serves concurrent runs.
        running = copy.copy(self)
        running.__dict__.update(fields)
        return running.execute(context)

    def resolve_string_dependencies(self) -> None:
        """Also link the outputs held in attributes, set after `Task.__init__` made the task."""
        super().resolve_string_dependencies()
        self.link_input_refs()

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
    like any sync task, so a timeout or a cancel kills it with every process it started. The
    task ends when the shell exits, even if a background child still holds its stdout open
    (that child is then killed with the try's other leftovers).
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
        ) as process:
            try:
                last = _echo_output(process)
            except BaseException:
                process.kill()  # never leave the command running behind a failed task
                raise
            code = process.wait()
        if code != 0:
            raise TaskError(f"command exited with code {code}: {self.command}")
        return last


def _echo_output(process: subprocess.Popen[bytes]) -> str:
    """Copy the command's output into the try's log until it exits; return its last line.

    Reads until the shell exits, not until its stdout closes: a background child may hold it
    open for hours. What is in the pipe when the shell exits is still read.
    """
    fd = cast(IO[bytes], process.stdout).fileno()
    echo = _LineEcho()
    pidfd = os.pidfd_open(process.pid)
    try:
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        poller.register(pidfd, select.POLLIN)
        while True:
            ready = {ready_fd for ready_fd, _ in poller.poll()}
            if pidfd in ready:  # exited: take what it wrote, not what its children write next
                os.set_blocking(fd, False)
                while chunk := _read_available(fd):
                    echo.feed(chunk)
                break
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            echo.feed(chunk)
    finally:
        os.close(pidfd)
    return echo.finish()


def _read_available(fd: int) -> bytes:
    try:
        return os.read(fd, 65536)
    except BlockingIOError:
        return b""


class _LineEcho:
    """Prints output to the try's log line by line; remembers the last non-blank line."""

    def __init__(self) -> None:
        # A command printing bytes that are not UTF-8 still succeeds.
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._pending = ""
        self.last = ""

    def feed(self, chunk: bytes) -> None:
        *lines, self._pending = (self._pending + self._decoder.decode(chunk)).split("\n")
        for line in lines:
            self._print(line + "\n")

    def finish(self) -> str:
        rest = self._pending + self._decoder.decode(b"", final=True)
        if rest:
            self._print(rest)
        return self.last

    def _print(self, line: str) -> None:
        print(line, end="", flush=True)
        if line.strip():
            self.last = line.rstrip("\n")


def _run_environment(context: TaskContext) -> dict[str, str]:
    return {
        "ORCHESTRATOR_DAG_ID": context.dag_id,
        "ORCHESTRATOR_RUN_ID": context.run_id,
        "ORCHESTRATOR_TASK_ID": context.task_id,
        "ORCHESTRATOR_TRY_NUMBER": str(context.try_number),
        "ORCHESTRATOR_CONF": json.dumps(context.conf),
        "ORCHESTRATOR_PARAMS": json.dumps(context.params),
    }
