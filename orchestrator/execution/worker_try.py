"""A try on an idle worker process, driven by the loop's callbacks rather than a task.

The job goes down the idle worker's pipe at once, and its reply is taken by a reader callback
in the turn of the loop that it arrives in: no task for the try, no cancel scopes, no turn
for a woken task to resume in. What has to be waited for (killing the worker after a timeout,
a cancel or a broken reply; learning how a worker that died ended) goes to a task of the
executor, as it would in `Executor.execute`, and the try's outcome is reported after it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from anyio.abc import TaskGroup

from orchestrator.execution.interface import Report
from orchestrator.execution.jobs import TaskOutcome
from orchestrator.execution.worker_pool import (
    WorkerDied,
    WorkerFailure,
    WorkerPool,
    WorkerProcess,
)


class WorkerTry:
    """One job sent to `worker`; its outcome goes to `report` (see `Executor.start_now`).

    `fail` makes the outcome of a failure the executor saw (and notes it in the try's log);
    `counted` is called once the try has ended by itself (a cancel does not count). The try
    is in `running` until it ends, so that a closing executor can stop it.
    """

    def __init__(
        self,
        *,
        pool: WorkerPool,
        worker: WorkerProcess,
        timeout: float | None,
        reply_limit: int,
        report: Report,
        fail: Callable[[str], TaskOutcome],
        counted: Callable[[], None],
        task_group: TaskGroup,
        running: set[WorkerTry],
    ) -> None:
        self._pool = pool
        self._worker = worker
        self._reply_limit = reply_limit
        self._report = report
        self._fail = fail
        self._counted = counted
        self._task_group = task_group
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(worker.replies, self._readable)
        self._timeout = timeout
        self._timer = None if timeout is None else self._loop.call_later(timeout, self._timed_out)
        self._ended = False
        self._running = running
        running.add(self)

    def stop(self, stopped: Callable[[], None]) -> None:
        """Kill the worker (in a task), then call `stopped`; nothing if the try has ended."""
        if not self._ended:
            self._end()
            self._task_group.start_soon(self._stop_then, stopped)

    def _readable(self) -> None:
        try:
            outcome = self._worker.take_reply(self._reply_limit)
        except WorkerDied:
            self._end_in_task(None)
            return
        except WorkerFailure as failure:
            self._end_in_task(failure.message)
            return
        if outcome is not None:
            self._end()
            self._pool.checkin(self._worker)
            self._counted()
            self._report(outcome, True)

    def _timed_out(self) -> None:
        self._end_in_task(f"timed out after {self._timeout:g} s (execution_timeout)")

    def _end(self) -> None:
        self._ended = True
        self._running.discard(self)
        self._loop.remove_reader(self._worker.replies)
        if self._timer is not None:
            self._timer.cancel()

    def _end_in_task(self, message: str | None) -> None:
        """End the try as failed with `message` (None: the worker died, and says how)."""
        self._end()
        self._task_group.start_soon(self._fail_then_report, message)

    async def _fail_then_report(self, message: str | None) -> None:
        if message is None:
            message = (await self._worker.died()).message
        await self._pool.discard(self._worker)  # after a failure the worker cannot be trusted
        self._counted()
        self._report(self._fail(message), False)

    async def _stop_then(self, stopped: Callable[[], None]) -> None:
        await self._pool.discard(self._worker)
        stopped()
