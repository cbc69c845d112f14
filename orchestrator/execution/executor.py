"""The executor: runs one try of a task and reports its `TaskOutcome`.

```python
async with Executor.open(slots=4, prestart=2) as executor:
    outcome = await executor.execute(job, task)
```

Where the code runs:

- `async def` tasks: in the engine's event loop, under a cancel scope (timeouts work fully).
- sync tasks with `in_process=True`: in a thread of the engine process. A thread cannot be
  stopped, so on a timeout the executor stops *waiting*: the try fails and the thread is
  abandoned, still running, until the task's code returns by itself.
- other sync tasks: in a worker process (see `execution/worker.py`), reused across tasks. A
  timeout or a cancel SIGKILLs the worker with every process below it (the task's own
  subprocesses, even those that left its process group), and the worker is replaced; a try
  that ends by itself has its leftovers killed by the worker. A worker that crashes is
  reported (`worker process died: exit code 7`, `... killed by signal SIGSEGV`) and replaced.

`start_now` starts a sync try on a free thread or an idle worker at once, without a task to
wait in (see `execution/worker_try.py`); its outcome comes to a callback, with the same
contract as `execute`'s.

`execute` never raises for a task's own failure (an exception, a crash, a timeout, a result
that cannot be stored): it returns a failed outcome whose `error` is one line for the user;
the details are in the try's log. It does raise when the caller is cancelled, after stopping
the task's code.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial

import anyio
from anyio.abc import TaskGroup

from orchestrator.authoring.context import task_context
from orchestrator.authoring.tasks import Task
from orchestrator.errors import ConfigError, TaskError, error_line
from orchestrator.execution.begun_tries import mark_begun
from orchestrator.execution.interface import ExecutorStatus, Report, Stop
from orchestrator.execution.invoke import invoke, invoke_async, is_async_job
from orchestrator.execution.jobs import Outcome, TaskJob, TaskOutcome
from orchestrator.execution.log_capture import capture
from orchestrator.execution.log_files import append_to_log
from orchestrator.execution.log_opener import LogOpener
from orchestrator.execution.results import (
    outcome_of_call,
    outcome_of_error,
    outcome_of_value,
)
from orchestrator.execution.task_threads import Answer, TaskThreads
from orchestrator.execution.worker import encode_message, job_to_json
from orchestrator.execution.worker_pool import JobNotDelivered, WorkerFailure, WorkerPool
from orchestrator.execution.worker_try import WorkerTry

logger = logging.getLogger(__name__)

#: A reply carries the result JSON as a JSON string, in which escaping at most doubles it.
_REPLY_MARGIN = 64 * 1024


@dataclass(frozen=True, kw_only=True)
class ExecutorStatistics:
    """A snapshot of the executor's counters (for metrics and tests)."""

    workers_started: int  # worker processes spawned since the executor opened
    workers_alive: int  # worker processes not yet reaped: starting, idle, busy or retiring
    tasks_run: int  # tries finished, in every mode
    workers_killed: int  # workers SIGKILLed by the executor: timeouts, cancels, bad replies
    workers_crashed: int  # workers that died by themselves during a task


class Executor:
    """Runs tries of tasks; owns the worker processes. Create it with `Executor.open`."""

    def __init__(self, pool: WorkerPool, *, slots: int, task_group: TaskGroup) -> None:
        self._pool = pool
        self._task_group = task_group  # kills workers for tries started by `start_now`
        self._threads = TaskThreads(slots)
        self._logs = LogOpener()  # async tasks' logs, opened off the loop
        self._tasks_run = 0
        self._worker_tries: set[WorkerTry] = set()  # started by `start_now`, not ended yet

    @classmethod
    @asynccontextmanager
    async def open(
        cls, *, slots: int, worker_max_tasks: int | None = None, prestart: int = 0
    ) -> AsyncIterator[Executor]:
        """An executor with at most `slots` worker processes, closed (workers stopped) on exit.

        `worker_max_tasks` recycles a worker after that many tasks (a leaky task cannot grow
        a worker forever); `prestart` starts that many workers now, in the background, so the
        first tasks do not wait for a Python start-up.
        """
        _check_options(slots, worker_max_tasks, prestart)
        async with anyio.create_task_group() as task_group:
            pool = WorkerPool(slots=slots, max_tasks=worker_max_tasks, task_group=task_group)
            pool.prestart(prestart)
            executor = cls(pool, slots=slots, task_group=task_group)
            try:
                yield executor
            finally:
                executor._threads.close()
                for worker_try in list(executor._worker_tries):  # their workers are killed
                    worker_try.stop(lambda: None)
                with anyio.CancelScope(shield=True):
                    await pool.aclose()

    @property
    def statistics(self) -> ExecutorStatistics:
        """The counters as they are now, frozen."""
        pool = self._pool
        return ExecutorStatistics(
            workers_started=pool.workers_started,
            workers_alive=pool.workers_alive,
            tasks_run=self._tasks_run,
            workers_killed=pool.workers_killed,
            workers_crashed=pool.workers_crashed,
        )

    def describe(self) -> ExecutorStatus:
        """The local pool: always able to run tries, on this machine's worker processes."""
        alive = self._pool.workers_alive
        return ExecutorStatus(
            kind="local", connected=True, workers=alive, detail=f"{alive} worker processes"
        )

    async def execute(self, job: TaskJob, task: Task) -> TaskOutcome:
        """Run one try of `task` and report how it ended; call it while the executor is open.

        Cancelling the caller stops the task's code (kills its worker, cancels its coroutine,
        abandons its thread) before the cancellation propagates.
        """
        try:
            is_async = is_async_job(task, job)
        except TaskError as error:
            return _failed(job, str(error))
        if is_async:
            outcome = await self._run_in_loop(job, task)
        elif job.in_process:
            outcome = await self._run_in_thread(job, task)
        else:
            outcome = await self._run_in_worker(job)
        self._tasks_run += 1
        return outcome

    # -- async tasks: in the event loop ---------------------------------------------------------

    async def _run_in_loop(self, job: TaskJob, task: Task) -> TaskOutcome:
        path = job.context.log_path
        try:
            fd = await self._logs.open(path) if path else None
            with capture(path, job.log_max_bytes, fd=fd) as log, task_context(job.context):
                with _deadline(job.timeout) as deadline:
                    try:
                        value = await invoke_async(task, job)
                    except (anyio.get_cancelled_exc_class(), KeyboardInterrupt):
                        raise
                    except BaseException as error:
                        return outcome_of_error(error, log)
                if deadline.cancelled_caught:
                    return _timed_out(job)
                return outcome_of_value(value, job, log)
        except OSError as error:  # the task's own OSErrors were caught above: this is the log
            return _log_unusable(job, error)

    # -- sync tasks in the engine process: a thread ---------------------------------------------

    async def _run_in_thread(self, job: TaskJob, task: Task) -> TaskOutcome:
        with anyio.move_on_after(job.timeout):
            return await self._threads.run(partial(_call_in_thread, job, task))
        return _timed_out(job)

    def start_now(self, job: TaskJob, task: Task, report: Report) -> Stop | None:
        """Start a sync try now, with no task to wait in; None if it cannot be started so.

        Its outcome goes to `report` in the loop, as `execute` would have returned it, with
        whether the log is sure to be within `job.log_max_bytes` (not after a failure the
        executor noted in it). The returned `Stop` stops the try (a cancel): `report` is
        then never called. None: the try is async, or must wait for a thread or a worker;
        `execute` runs it.
        """
        try:
            if is_async_job(task, job):
                return None
        except TaskError:
            return None
        if job.in_process:
            return self._start_in_thread(job, task, report)
        return self._start_on_worker(job, report)

    def _start_in_thread(self, job: TaskJob, task: Task, report: Report) -> Stop | None:
        timer: asyncio.TimerHandle | None = None

        def answered(answer: Answer) -> None:
            if timer is not None:
                timer.cancel()
            succeeded, value = answer
            if not succeeded:
                raise value  # KeyboardInterrupt: the operator stops the whole process
            self._count()
            report(value, True)

        abandon = self._threads.start(partial(_call_in_thread, job, task), answered)
        if abandon is None:
            return None

        def timed_out() -> None:
            abandon()
            self._count()
            report(_timed_out(job), False)

        if job.timeout is not None:
            timer = asyncio.get_running_loop().call_later(job.timeout, timed_out)

        def stop(stopped: Callable[[], None]) -> None:
            abandon()
            if timer is not None:
                timer.cancel()
            stopped()

        return stop

    def _start_on_worker(self, job: TaskJob, report: Report) -> Stop | None:
        worker = self._pool.take_idle()
        if worker is None:
            return None
        try:
            sent = worker.send_now(encode_message({"job": job_to_json(job)}), job.process_token)
        except (TypeError, ValueError):  # inputs that are not JSON: `execute` says so
            sent = False
        except JobNotDelivered:  # it died while idle; `execute` takes another worker
            self._task_group.start_soon(self._pool.discard, worker)
            return None
        if not sent:
            self._pool.checkin(worker)
            return None
        return WorkerTry(
            pool=self._pool,
            worker=worker,
            timeout=job.timeout,
            reply_limit=_reply_limit(job),
            report=report,
            fail=partial(_failed, job),
            counted=self._count,
            task_group=self._task_group,
            running=self._worker_tries,
        ).stop

    def _count(self) -> None:
        self._tasks_run += 1

    # -- sync tasks in worker processes ---------------------------------------------------------

    async def _run_in_worker(self, job: TaskJob) -> TaskOutcome:
        try:
            payload = encode_message({"job": job_to_json(job)})
        except (TypeError, ValueError) as error:
            return _failed(
                job,
                f"the inputs of task {job.task_id!r} cannot be sent to a worker process as "
                f"JSON ({error_line(error)})",
            )
        for _ in range(2):  # a worker that died while idle never got the job: take another
            try:
                return await self._run_on_worker(payload, job)
            except JobNotDelivered:
                continue
            except WorkerFailure as failure:
                return _failed(job, failure.message)
            except TimeoutError:
                return _timed_out(job)
        return _failed(job, "two worker processes in a row died before they could take the task")

    async def _run_on_worker(self, payload: bytes, job: TaskJob) -> TaskOutcome:
        """One job on one worker. The timeout starts once a worker is ready, not before."""
        worker = await self._pool.checkout()
        try:
            with anyio.fail_after(job.timeout):
                outcome = await worker.request(payload, _reply_limit(job), job.process_token)
        except BaseException:  # failed, timed out or cancelled: the worker cannot be trusted
            await self._pool.discard(worker)
            raise
        self._pool.checkin(worker)
        return outcome


def _reply_limit(job: TaskJob) -> int:
    return 2 * job.result_max_bytes + _REPLY_MARGIN


def _call_in_thread(job: TaskJob, task: Task) -> TaskOutcome:
    """A sync try in a thread of the engine; its log is opened and closed there, so that an
    abandoned thread still has its log."""
    try:
        mark_begun(job.begun_journal, job.context.log_path)
        with capture(job.context.log_path, job.log_max_bytes) as log, task_context(job.context):
            return outcome_of_call(lambda: invoke(task, job), job, log)
    except OSError as error:
        return _log_unusable(job, error)


def _check_options(slots: int, worker_max_tasks: int | None, prestart: int) -> None:
    if not isinstance(slots, int) or slots < 1:
        raise ConfigError(f"the executor needs 1 or more slots, got {slots!r}")
    if worker_max_tasks is not None and (
        not isinstance(worker_max_tasks, int) or worker_max_tasks < 1
    ):
        raise ConfigError(
            f"worker_max_tasks must be 1 or more (or unset), got {worker_max_tasks!r}"
        )
    if not isinstance(prestart, int) or not 0 <= prestart <= slots:
        raise ConfigError(f"prestart must be between 0 and slots ({slots}), got {prestart!r}")


def _failed(job: TaskJob, error: str) -> TaskOutcome:
    """A failure the executor saw rather than the task's code: say it in the try's log too."""
    append_to_log(job.context.log_path, error)
    return TaskOutcome(status=Outcome.FAILED, error=error)


class _NoDeadline:
    """`move_on_after(None)` for a try without a timeout, without making a cancel scope: one
    with no deadline, which nothing else can reach, neither catches nor shields anything
    (anyio's scope costs 3.5 us to make, enter and leave, timeit; one per async try)."""

    cancelled_caught = False

    def __enter__(self) -> _NoDeadline:
        return self

    def __exit__(self, *exc_info: object) -> None:
        return None


_NO_DEADLINE = _NoDeadline()


def _deadline(seconds: float | None) -> anyio.CancelScope | _NoDeadline:
    return _NO_DEADLINE if seconds is None else anyio.move_on_after(seconds)


def _timed_out(job: TaskJob) -> TaskOutcome:
    return _failed(job, f"timed out after {job.timeout:g} s (execution_timeout)")


def _log_unusable(job: TaskJob, error: OSError) -> TaskOutcome:
    message = f"cannot write the try's log {job.context.log_path}: {error_line(error)}"
    return TaskOutcome(status=Outcome.FAILED, error=message)
