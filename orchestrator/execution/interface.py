"""The executor interface: what the scheduler calls, whichever executor runs the tries.

Two executors implement it: the local pool of worker processes (`execution/executor.py`, the
default) and the Dask executor (`execution/dask_executor.py`, `executor = "dask"`). The
scheduler hands over one try at a time and learns nothing about where it runs:

- **dispatch and outcome**: `await executor.execute(job, task)` runs one try and returns its
  `TaskOutcome`. It never raises for the task's own faults (an exception, a crash, a lost
  worker, a result that is not JSON): those are failed outcomes, retried by our policy.
- **cancel**: cancelling the caller stops the try's code (its process, wherever it runs)
  before the cancellation propagates; a timeout (`job.timeout`) does the same and fails it.
- **status**: `executor.describe()` says which executor it is and whether it can run tries
  now (connected, how many workers, or why not), for `/api/v1/health`, the UI's home page
  and the daemon's `ping`.
- **log**: by the time `execute` returns, the try's output is in `job.context.log_path` on the
  daemon's disk (a remote executor ships it there while the try runs), so the CLI and the UI
  read every try's log the same way.
- **quick start** (optional, `QuickStarts`): `executor.start_now(job, task, report)` starts a
  try that can run at once (the local pool: a free thread, an idle worker) with no task to
  wait in, under the same contract; its outcome goes to `report`, and the `Stop` it returns
  is the cancel.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from orchestrator.config import Settings
from orchestrator.execution.jobs import TaskJob, TaskOutcome

if TYPE_CHECKING:
    from orchestrator.authoring.tasks import Task


@dataclass(frozen=True, kw_only=True)
class ExecutorStatus:
    """Which executor runs the tries, and whether it can now: a snapshot."""

    kind: str  # "local" or "dask"
    connected: bool  # False: tries bound for it wait (`detail` says why)
    address: str | None = None  # the Dask scheduler's
    workers: int | None = None  # worker processes (local) or Dask workers, when known
    detail: str = ""

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


class TaskExecutor(Protocol):
    """Runs tries of tasks: see the module's docstring for the contract."""

    async def execute(self, job: TaskJob, task: Task) -> TaskOutcome:
        """Run one try of `task` and report how it ended."""
        ...

    def describe(self) -> ExecutorStatus:
        """Which executor this is, and whether it can run tries now."""
        ...


#: Takes a try's outcome, and whether its log is sure to be within its cap already.
Report = Callable[[TaskOutcome, bool], None]


#: Stops a try started by `QuickStarts.start_now`, then calls its argument once the try's
#: code no longer runs (at once for a thread, which is abandoned; a worker is killed first).
Stop = Callable[[Callable[[], None]], None]


@runtime_checkable
class QuickStarts(Protocol):
    """An executor that can also start a try with no task to wait in it.

    The outcome comes to a callback instead (see `Executor.start_now`): no task, no cancel
    scopes, and no turn of the loop for a woken task to resume in.
    """

    def start_now(self, job: TaskJob, task: Task, report: Report) -> Stop | None:
        """Start the try and return what stops it; None if `execute` must run it."""
        ...


@asynccontextmanager
async def open_executor(
    settings: Settings, *, state_identity: str, prestart: int
) -> AsyncIterator[TaskExecutor]:
    """The executor `settings.executor` names, open for the block.

    `prestart` warms that many local worker processes (the local executor only);
    `state_identity` tells this daemon's tries from another's on a shared cluster.
    """
    from orchestrator.execution.executor import Executor

    if settings.executor == "dask":
        # Imported only when chosen: `distributed` takes a second to import.
        from orchestrator.execution.dask_executor import DaskExecutor

        async with DaskExecutor.open(settings, state_identity=state_identity) as dask:
            yield dask
        return
    async with Executor.open(
        slots=settings.slots, worker_max_tasks=settings.worker_max_tasks, prestart=prestart
    ) as local:
        yield local
