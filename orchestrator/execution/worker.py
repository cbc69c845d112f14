"""A worker process (`python -m orchestrator.execution.worker`): runs sync tasks, one at a time.

Protocol: newline-delimited JSON on the process's stdin and stdout.

```
worker -> engine   {"ready": true}                                        once, at start
engine -> worker   {"job": <TaskJob as JSON>}
worker -> engine   {"status": "success", "result_json": "...", "error": null}
...                                                                       until stdin closes
```

A worker is a child subreaper: every process a task starts stays below it, even after a
`setsid` or a double fork, and is killed once the try ends (before the outcome is sent), so
nothing of one try runs beside the next. Each try's processes carry its token in their
environment (`ORCHESTRATOR_TRY_TOKEN`), so they can be found after the worker died, too.

At start the worker moves the protocol to private copies of fds 0 and 1 and points fds 0/1
at /dev/null, so nothing a task prints can corrupt the protocol. For each job it points fds
1 and 2 at the try's log, so the output of the task, of its subprocesses, of C extensions and
of `logging` all land there: through a pipe that holds the log to its cap while the try runs
(`execution/log_pipe.py`), or, for a job without a cap, at the file itself. Between jobs
it puts back the environment, working directory, `sys.argv`, standard streams and root log
handlers the task may have changed: a worker is reused. On Linux the worker dies with the
engine, even when the engine is killed with -9.

This module is the first thing a worker imports: keep its imports to what running a task needs.
"""

from __future__ import annotations

import ctypes
import dataclasses
import inspect
import json
import logging
import os
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any

from orchestrator.authoring.context import RunRequest, TaskContext, task_context
from orchestrator.authoring.tasks import Task
from orchestrator.errors import error_line
from orchestrator.execution.begun_tries import mark_begun
from orchestrator.execution.capped_log import CappedLog
from orchestrator.execution.invoke import invoke
from orchestrator.execution.jobs import Outcome, TaskJob, TaskOutcome
from orchestrator.execution.log_capture import LOG_FORMAT
from orchestrator.execution.log_files import open_log_fd
from orchestrator.execution.log_pipe import LogPipe
from orchestrator.execution.results import outcome_of_call
from orchestrator.execution.try_processes import (
    TRY_TOKEN_VARIABLE,
    become_subreaper,
    stop_descendants,
)
from orchestrator.loading.importer import FileResult, load_dag_file

#: The C library, for `fflush(NULL)` and `prctl`.
_LIBC = ctypes.CDLL(None)
_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
#: The exit code of a worker whose pipe to the engine was closed under it (by a task).
CHANNEL_LOST_EXIT = 75

# -- the protocol: both sides use these ------------------------------------------------------


def encode_message(message: dict[str, Any]) -> bytes:
    """One protocol line. Compact JSON has no raw newline, so a line is one message."""
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"


def job_to_json(job: TaskJob) -> dict[str, Any]:
    # Shallow on purpose: `asdict` would deep-copy the inputs only for json.dumps to read them.
    data = {field.name: getattr(job, field.name) for field in dataclasses.fields(job)}
    data["context"] = job.context.to_json()
    return data


def job_from_json(data: dict[str, Any]) -> TaskJob:
    return TaskJob(**{**data, "context": TaskContext.from_json(data["context"])})


_OUTCOME_TEXTS = ("result_json", "error", "deferral_json")


def outcome_to_json(outcome: TaskOutcome) -> dict[str, Any]:
    data = {
        "status": outcome.status.value,
        **{key: getattr(outcome, key) for key in _OUTCOME_TEXTS},
    }
    if outcome.run_requests:  # only then: a reply without the key is still a whole outcome
        data["run_requests"] = [dataclasses.asdict(request) for request in outcome.run_requests]
    return data


def outcome_from_json(data: Any) -> TaskOutcome:
    """The outcome in a worker's reply; `ValueError` if the reply is not one."""
    if not isinstance(data, dict) or set(data) - {"run_requests"} != {"status", *_OUTCOME_TEXTS}:
        raise ValueError(f"expected status, {', '.join(_OUTCOME_TEXTS)}; got {str(data)[:200]}")
    if not all(isinstance(data[key], str | None) for key in _OUTCOME_TEXTS):
        raise ValueError(f"{', '.join(_OUTCOME_TEXTS)} must be strings or null")
    try:
        requests = tuple(RunRequest(**request) for request in data.get("run_requests", ()))
    except TypeError as error:
        raise ValueError(f"run_requests must be runs asked for: {error}") from None
    texts = {key: data[key] for key in _OUTCOME_TEXTS}
    return TaskOutcome(status=Outcome(data["status"]), run_requests=requests, **texts)


# -- the worker side ---------------------------------------------------------------------------


class Channel:
    """The protocol's two private pipe ends; fds 0 and 1 are given up to /dev/null."""

    def __init__(self) -> None:
        # os.dup() makes non-inheritable fds: a task's subprocesses never hold the protocol.
        self.incoming = os.fdopen(os.dup(0), "rb")
        self.outgoing = os.fdopen(os.dup(1), "wb")
        devnull = os.open(os.devnull, os.O_RDWR)
        os.dup2(devnull, 0)
        os.dup2(devnull, 1)
        os.close(devnull)

    def send(self, message: dict[str, Any]) -> None:
        self.outgoing.write(encode_message(message))
        self.outgoing.flush()

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for line in self.incoming:
            yield json.loads(line)


class Runner:
    """Runs jobs in this process, keeping each DAG file imported until it changes."""

    def __init__(self) -> None:
        self._files: dict[str, tuple[tuple[int, int], FileResult]] = {}
        self._log_pipe = LogPipe()

    def run(self, job: TaskJob) -> TaskOutcome:
        """Run one try with its output in its log and the process restored afterwards."""
        path = job.context.log_path
        try:
            mark_begun(job.begun_journal, path)
        except OSError as error:
            return _unopenable(path, error)
        if path and job.log_max_bytes:
            # fds 1 and 2 go to a pipe into the log, held to its cap and made by its first byte
            log = CappedLog.made_at_first_write(path, job.log_max_bytes)
            with self._log_pipe.into(log) as output_fd:
                outcome = self._run_with_output(job, output_fd)
            return outcome if log.open_error is None else _unopenable(path, log.open_error)
        try:  # fds 1 and 2 go to the log itself (no cap), or to the engine's stderr (no log)
            log_fd = open_log_fd(path) if path else os.dup(2)
        except OSError as error:
            return _unopenable(path, error)
        return self._run_with_output(job, log_fd)

    def _run_with_output(self, job: TaskJob, output_fd: int) -> TaskOutcome:
        with _output_to(output_fd), _process_state_restored():
            if job.process_token:
                os.environ[TRY_TOKEN_VARIABLE] = job.process_token
            task = self._find_task(job)
            if isinstance(task, TaskOutcome):
                return task
            with task_context(job.context):
                return outcome_of_call(lambda: _run_sync(task, job), job, sys.stderr)

    def _find_task(self, job: TaskJob) -> Task | TaskOutcome:
        result = self._load(job.fileloc)
        pipeline = result.dags.get(job.dag_id)
        if pipeline is None:
            outcome = _failed(_missing_dag_message(job, result))
            sys.stderr.write("".join(f"{error}\n" for error in result.errors[1:]))
            return outcome
        task = pipeline.tasks.get(job.task_id)
        if task is None:
            return _failed(f"task {job.task_id!r} is not in DAG {job.dag_id!r} of {job.fileloc}")
        return task

    def _load(self, path: str) -> FileResult:
        """The file's DAGs, imported again only when its modification time or size changed."""
        try:
            status = os.stat(path)
        except OSError:
            return load_dag_file(path)  # reports the missing file as an import error
        version = (status.st_mtime_ns, status.st_size)
        cached = self._files.get(path)
        if cached is None or cached[0] != version:
            cached = (version, load_dag_file(path))
            self._files[path] = cached
        return cached[1]


def _run_sync(task: Task, job: TaskJob) -> Any:
    value = invoke(task, job)
    if inspect.isawaitable(value):
        close = getattr(value, "close", None)
        if close is not None:
            close()  # a coroutine never awaited would warn
        raise TypeError(
            f"task {job.task_id!r} is async in {job.fileloc} now, but was sent to a worker as "
            "sync: the file changed during the run; a try after the engine reloads it will work"
        )
    return value


def _missing_dag_message(job: TaskJob, result: FileResult) -> str:
    if result.errors:
        return f"DAG file does not import: {result.errors[0]}"
    found = ", ".join(sorted(result.dags)) or "none"
    return f"DAG {job.dag_id!r} is not defined in {job.fileloc} (DAGs there: {found})"


def _failed(error: str) -> TaskOutcome:
    """A try that failed before the task's code ran; the reason goes to its log as well."""
    sys.stderr.write(f"{error}\n")
    return TaskOutcome(status=Outcome.FAILED, error=error)


def _unopenable(log_path: str, error: OSError) -> TaskOutcome:
    return _failed(f"cannot open the try's log {log_path}: {error_line(error)}")


@contextmanager
def _output_to(output_fd: int) -> Iterator[None]:
    """Point fds 1 and 2 at `output_fd` for the block (which takes the fd over)."""
    _flush_all()
    saved = os.dup(1), os.dup(2)
    os.dup2(output_fd, 1)
    os.dup2(output_fd, 2)
    os.close(output_fd)
    try:
        yield
    finally:
        _flush_all()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        os.close(saved[0])
        os.close(saved[1])


def _flush_all() -> None:
    """Flush Python's and C's buffered output, so none of it leaks into another try's log."""
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        if stream is not None:
            with suppress(OSError, ValueError, AttributeError):  # a task may have broken it
                stream.flush()
    _LIBC.fflush(None)


@contextmanager
def _process_state_restored() -> Iterator[None]:
    """Undo what a task did to process-wide state that the next task on this worker would see."""
    environ, cwd, argv = dict(_environment_bytes()), os.getcwd(), list(sys.argv)
    streams = sys.stdin, sys.stdout, sys.stderr
    handlers, level = list(logging.root.handlers), logging.root.level
    try:
        yield
    finally:
        _restore_environ(environ)
        with suppress(OSError):  # the task may have removed the folder it was in
            os.chdir(cwd)
        sys.argv[:] = argv
        sys.stdin, sys.stdout, sys.stderr = streams
        _restore_root_logging(handlers, level)


def _environment_bytes() -> dict[bytes, bytes]:
    """The dict of bytes behind `os.environ` and `os.environb` (POSIX; CPython's `_data`).

    Copied and compared as it is, the environment costs a few microseconds a try; through
    `os.environ`, which decodes every name and value, it was about 70 µs, half of a no-op
    try's time in its worker.
    """
    data: dict[bytes, bytes] = vars(os.environb)["_data"]
    return data


def _restore_environ(saved: dict[bytes, bytes]) -> None:
    current = _environment_bytes()
    if current == saved:
        return
    for name in current.keys() - saved.keys():
        del os.environb[name]  # also unsets it in the process, for the task's subprocesses
    for name, value in saved.items():
        if current.get(name) != value:
            os.environb[name] = value


def _restore_root_logging(handlers: list[logging.Handler], level: int) -> None:
    for handler in list(logging.root.handlers):
        if handler not in handlers:
            logging.root.removeHandler(handler)
            handler.close()  # a FileHandler the task added would otherwise stay open
    for handler in handlers:
        if handler not in logging.root.handlers:
            logging.root.addHandler(handler)
    logging.root.setLevel(level)


def _configure_process() -> None:
    """Set the worker up: tied to the engine's life, logging at INFO, stdout line-buffered.

    On Linux the kernel SIGKILLs the worker when the engine dies, even by `kill -9`: the
    engine will run the try again after a restart, so this one must not go on running.
    """
    if sys.platform == "linux":
        _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    become_subreaper()
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT, stream=sys.stderr)
    reconfigure = getattr(sys.stdout, "reconfigure", None)
    if reconfigure is not None:
        reconfigure(line_buffering=True)


def main() -> None:
    """Serve jobs until the engine closes our stdin."""
    channel = Channel()
    _configure_process()
    runner = Runner()
    try:
        channel.send({"ready": True})
        for message in channel:
            outcome = runner.run(job_from_json(message["job"]))
            stop_descendants()  # nothing of this try may run beside the next one
            channel.send(outcome_to_json(outcome))
    except OSError as error:  # the engine is gone, or (EBADF) the task closed our pipe's fds
        sys.stderr.write(f"worker: lost its pipe to the engine: {error_line(error)}\n")
        stop_descendants()
        sys.stderr.flush()
        os._exit(CHANNEL_LOST_EXIT)


if __name__ == "__main__":
    main()
