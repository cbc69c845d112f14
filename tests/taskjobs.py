"""Real DAG files and `TaskJob`s for executor and worker tests (importable as `taskjobs`).

A test writes the task functions as Python source; every `@task` function in it becomes a task
(task id = function name) of the DAG `jobs`, so a worker process can import the file and find
it exactly as it would in production.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import anyio

from orchestrator.authoring.context import TaskContext
from orchestrator.authoring.tasks import Task
from orchestrator.config import Settings
from orchestrator.execution.jobs import TaskJob
from orchestrator.loading.importer import load_dag_file

DAG_ID = "jobs"
#: The cap on a try's log that jobs get unless a test sets its own: the engine's default.
LOG_MAX_BYTES = Settings().task_log_max_bytes

_HEADER = """\
import logging, os, subprocess, sys, threading, time
from orchestrator.authoring.dag import DAG
from orchestrator.authoring.tasks import Skip
from orchestrator.authoring.taskflow import task
"""

_FOOTER = """
from orchestrator.authoring.taskflow import TaskFunction as _TaskFunction

with DAG("jobs"):
    for _function in [v for v in list(globals().values()) if isinstance(v, _TaskFunction)]:
        _function()
"""


class DagFile:
    """A DAG file written by a test, with jobs for its tasks and their logs."""

    def __init__(self, folder: Path, source: str) -> None:
        self.folder = folder
        self.path = folder / "dag_jobs.py"
        self.write(source)

    def write(self, source: str) -> None:
        """(Re)write the file; the modification time moves on even within one clock tick."""
        previous = self.path.stat().st_mtime_ns if self.path.exists() else 0
        self.path.write_text(_HEADER + source + _FOOTER)
        stamp = max(self.path.stat().st_mtime_ns, previous + 1_000_000)
        os.utime(self.path, ns=(stamp, stamp))

    def task(self, task_id: str) -> Task:
        result = load_dag_file(self.path)
        if result.errors:
            raise AssertionError(f"the test's DAG file does not load: {result.errors}")
        return result.dags[DAG_ID].tasks[task_id]

    def log_path(self, task_id: str, try_number: int = 1) -> Path:
        return self.folder / "logs" / DAG_ID / "run1" / task_id / f"{try_number}.log"

    def log(self, task_id: str, try_number: int = 1) -> str:
        return self.log_path(task_id, try_number).read_text()

    def job(
        self,
        task_id: str,
        *args: Any,
        timeout: float | None = None,
        in_process: bool = False,
        result_max_bytes: int = 1_000_000,
        try_number: int = 1,
        log_path: str | None = None,
        log_max_bytes: int = LOG_MAX_BYTES,
        **kwargs: Any,
    ) -> TaskJob:
        context = TaskContext(
            dag_id=DAG_ID,
            run_id="run1",
            task_id=task_id,
            try_number=try_number,
            log_path=str(self.log_path(task_id, try_number)) if log_path is None else log_path,
        )
        return TaskJob(
            dag_id=DAG_ID,
            task_id=task_id,
            fileloc=str(self.path),
            context=context,
            inputs={"args": list(args), "kwargs": kwargs},
            timeout=timeout,
            in_process=in_process,
            result_max_bytes=result_max_bytes,
            log_max_bytes=log_max_bytes,
        )


async def read_fifo_line(fd: int) -> str:
    """One line from a FIFO opened with `open_fifo`, waiting on the fd (no polling)."""
    data = b""
    while not data.endswith(b"\n"):
        await anyio.wait_readable(fd)
        data += os.read(fd, 4096)
    return data.decode().strip()


def open_fifo(path: Path) -> int:
    """Make a FIFO a task can write to; opened read-write so neither side blocks on open."""
    os.mkfifo(path)
    return os.open(path, os.O_RDWR | os.O_NONBLOCK)


async def wait_until_exited(pidfd: int) -> None:
    """Return once the process behind `pidfd` has exited (it may still be a zombie)."""
    await anyio.wait_readable(pidfd)


def is_running(pid: int) -> bool:
    """True if `pid` is a live process (not gone, not a zombie)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


#: A task that writes its worker's pid to the FIFO it is given, then blocks for good.
HANGS_AFTER_WRITING_PID = """
@task
def hang(fifo):
    with open(fifo, "w") as pipe:
        pipe.write(f"{os.getpid()}\\n")
    threading.Event().wait()
"""
