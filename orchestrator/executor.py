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
- other sync tasks: in a worker process (see `orchestrator.worker`), reused across tasks. A
  timeout or a cancel SIGKILLs the worker's whole process group, so the task's own
  subprocesses die with it, and the worker is replaced. A worker that crashes is reported
  (`worker process died: exit code 7`, `... killed by signal SIGSEGV`) and replaced too.

`execute` never raises for a task's own failure (an exception, a crash, a timeout, a result
that cannot be stored): it returns a failed outcome whose `error` is one line for the user;
the details are in the try's log. It does raise when the caller is cancelled, after stopping
the task's code.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass

import anyio
import anyio.to_thread
from anyio.abc import Process, TaskGroup
from anyio.streams.buffered import BufferedByteReceiveStream

from orchestrator.context import task_context
from orchestrator.errors import ConfigError
from orchestrator.jobs import Outcome, TaskJob, TaskOutcome
from orchestrator.logcapture import append_to_log, capture
from orchestrator.results import one_line, outcome_of_call, outcome_of_error, outcome_of_value
from orchestrator.tasks import Task
from orchestrator.worker import encode_message, job_to_json, outcome_from_json

logger = logging.getLogger(__name__)

#: A reply carries the result JSON as a JSON string, in which escaping at most doubles it.
_REPLY_MARGIN = 64 * 1024
#: How long a worker may take to import and say it is ready before it counts as broken.
_START_TIMEOUT = 60.0
#: How long a retiring worker may take to exit by itself before it is killed.
_RETIRE_GRACE = 5.0


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

    def __init__(self, pool: _WorkerPool, *, slots: int) -> None:
        self._pool = pool
        self._threads = anyio.CapacityLimiter(slots)
        self._tasks_run = 0

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
            pool = _WorkerPool(slots=slots, max_tasks=worker_max_tasks, task_group=task_group)
            pool.prestart(prestart)
            try:
                yield cls(pool, slots=slots)
            finally:
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

    async def execute(self, job: TaskJob, task: Task) -> TaskOutcome:
        """Run one try of `task` and report how it ended; call it while the executor is open.

        Cancelling the caller stops the task's code (kills its worker, cancels its coroutine,
        abandons its thread) before the cancellation propagates.
        """
        if task.is_async:
            outcome = await self._run_in_loop(job, task)
        elif job.in_process:
            outcome = await self._run_in_thread(job, task)
        else:
            outcome = await self._run_in_worker(job)
        self._tasks_run += 1
        return outcome

    # -- async tasks: in the event loop ---------------------------------------------------------

    async def _run_in_loop(self, job: TaskJob, task: Task) -> TaskOutcome:
        try:
            with capture(job.context.log_path) as log, task_context(job.context):
                with anyio.move_on_after(job.timeout) as deadline:
                    try:
                        value = await task.run(job.inputs, job.context)
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
        def run() -> TaskOutcome:
            try:
                with capture(job.context.log_path) as log, task_context(job.context):
                    return outcome_of_call(lambda: task.run(job.inputs, job.context), job, log)
            except OSError as error:
                return _log_unusable(job, error)

        # The log is opened and closed in the thread: an abandoned thread still has its log.
        with anyio.move_on_after(job.timeout):
            return await anyio.to_thread.run_sync(
                run, abandon_on_cancel=True, limiter=self._threads
            )
        return _timed_out(job)

    # -- sync tasks in worker processes ---------------------------------------------------------

    async def _run_in_worker(self, job: TaskJob) -> TaskOutcome:
        try:
            payload = encode_message({"job": job_to_json(job)})
        except (TypeError, ValueError) as error:
            return _failed(
                job,
                f"the inputs of task {job.task_id!r} cannot be sent to a worker process as "
                f"JSON ({one_line(error)})",
            )
        for _ in range(2):  # a worker that died while idle never got the job: take another
            try:
                return await self._run_on_worker(payload, job)
            except _JobNotDelivered:
                continue
            except _WorkerFailure as failure:
                return _failed(job, failure.message)
            except TimeoutError:
                return _timed_out(job)
        return _failed(job, "two worker processes in a row died before they could take the task")

    async def _run_on_worker(self, payload: bytes, job: TaskJob) -> TaskOutcome:
        """One job on one worker. The timeout starts once a worker is ready, not before."""
        worker = await self._pool.checkout()
        try:
            with anyio.fail_after(job.timeout):
                outcome = await worker.request(payload, 2 * job.result_max_bytes + _REPLY_MARGIN)
        except BaseException:  # failed, timed out or cancelled: the worker cannot be trusted
            await self._pool.discard(worker)
            raise
        self._pool.checkin(worker)
        return outcome


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


def _timed_out(job: TaskJob) -> TaskOutcome:
    return _failed(job, f"timed out after {job.timeout:g} s (execution_timeout)")


def _log_unusable(job: TaskJob, error: OSError) -> TaskOutcome:
    message = f"cannot write the try's log {job.context.log_path}: {one_line(error)}"
    return TaskOutcome(status=Outcome.FAILED, error=message)


# -- worker processes ---------------------------------------------------------------------------


class _WorkerFailure(Exception):
    """A worker process failed the job: it died, timed out at start, or broke the protocol."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class _JobNotDelivered(Exception):
    """The worker had died while idle: the job never reached it and can go to another."""


class _WorkerProcess:
    """The engine's handle on one worker process: its pipes and how many tasks it ran."""

    def __init__(self, process: Process) -> None:
        if process.stdin is None or process.stdout is None:
            raise RuntimeError("a worker process needs pipes on its stdin and stdout")
        self._process = process
        self._requests = process.stdin
        self._replies = BufferedByteReceiveStream(process.stdout)
        self.tasks_run = 0
        self.crashed = False

    @classmethod
    async def start(cls) -> _WorkerProcess:
        """Spawn a worker in its own process group and wait until it is ready for jobs."""
        try:
            process = await anyio.open_process(
                [sys.executable, "-m", "orchestrator.worker"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=None,  # the worker's own errors go to the engine's stderr
                start_new_session=True,
            )
        except OSError as error:
            raise _WorkerFailure(f"cannot start a worker process: {one_line(error)}") from None
        worker = cls(process)
        try:
            with anyio.fail_after(_START_TIMEOUT):
                await worker._receive_ready()
        except BaseException as error:
            await worker.stop()
            if isinstance(error, TimeoutError):
                raise _WorkerFailure(
                    f"a worker process did not start within {_START_TIMEOUT:g} s"
                ) from None
            raise
        return worker

    async def _receive_ready(self) -> None:
        try:
            line = await self._replies.receive_until(b"\n", 1024)
        except (anyio.IncompleteRead, anyio.DelimiterNotFound, anyio.BrokenResourceError):
            line = b""
        if line.strip() != b'{"ready":true}':
            failure = await self._died() if not line else f"it sent {line[:200]!r}"
            raise _WorkerFailure(
                f"a worker process failed to start ({failure}); its error output is in the "
                "engine's stderr"
            )

    async def request(self, payload: bytes, reply_limit: int) -> TaskOutcome:
        """Send one job and wait for its outcome; a dead or misbehaving worker raises."""
        if self._process.returncode is not None:
            self.crashed = True
            raise _JobNotDelivered
        try:
            await self._requests.send(payload)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            self.crashed = True
            raise _JobNotDelivered from None
        outcome = outcome_from_json(await self._receive_reply(reply_limit))
        self.tasks_run += 1
        return outcome

    async def _receive_reply(self, reply_limit: int) -> object:
        try:
            line = await self._replies.receive_until(b"\n", reply_limit)
        except (anyio.IncompleteRead, anyio.BrokenResourceError):
            raise _WorkerFailure(f"worker process died: {await self._died()}") from None
        except anyio.DelimiterNotFound:
            raise _WorkerFailure(
                f"the worker process sent a reply longer than {reply_limit} bytes, which no "
                "valid outcome is; the worker was killed"
            ) from None
        try:
            return json.loads(line)
        except ValueError as error:
            raise _WorkerFailure(
                f"the worker process sent a reply that is not JSON ({one_line(error)}); "
                "the worker was killed"
            ) from None

    async def _died(self) -> str:
        """How the worker ended, once its pipe closed; also kills what it left running."""
        self.crashed = True
        _kill_group(self._process.pid)  # the task's orphans, or a worker that closed its pipe
        return _describe_exit(await self._process.wait())

    async def stop(self) -> bool:
        """SIGKILL the worker's process group and reap it; True if the worker was alive."""
        alive = self._process.returncode is None
        _kill_group(self._process.pid)
        with anyio.CancelScope(shield=True):
            await self._process.aclose()
        return alive

    async def retire(self) -> None:
        """Let the worker exit by itself (end of its stdin); kill it if it does not in time."""
        try:
            with anyio.move_on_after(_RETIRE_GRACE):
                await self._requests.aclose()
                await self._process.wait()
        finally:  # also when cancelled: the executor is closing
            if self._process.returncode is None:
                await self.stop()
            else:
                with anyio.CancelScope(shield=True):
                    await self._process.aclose()


def _kill_group(pid: int) -> None:
    # A worker leads its own process group (start_new_session), so this reaches every
    # process the task started too. The group may be gone already: that is fine.
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def _describe_exit(code: int) -> str:
    """`exit code 7` or `killed by signal SIGSEGV`, from a process's return code."""
    if code >= 0:
        return f"exit code {code}"
    try:
        name = signal.Signals(-code).name
    except ValueError:
        name = f"signal {-code}"
    hint = " (out of memory?)" if -code == signal.SIGKILL else ""
    return f"killed by signal {name}{hint}"


class _WorkerPool:
    """At most `slots` live worker processes; idle ones are reused, most recent first.

    Every process counts against `slots` from its spawn until it is reaped, including the
    ones starting up and the ones retiring, so the limit holds at every moment.
    """

    def __init__(self, *, slots: int, max_tasks: int | None, task_group: TaskGroup) -> None:
        self._slots = slots
        self._max_tasks = max_tasks
        self._task_group = task_group
        self._idle: list[_WorkerProcess] = []
        self._prestarting = 0
        self._changed = anyio.Event()
        self.workers_started = 0
        self.workers_alive = 0
        self.workers_killed = 0
        self.workers_crashed = 0

    def prestart(self, count: int) -> None:
        self._prestarting += count
        for _ in range(count):
            self._task_group.start_soon(self._prestart_one)

    async def aclose(self) -> None:
        """Stop prestarts and retirements, and let the idle workers exit."""
        self._task_group.cancel_scope.cancel()
        idle, self._idle = self._idle, []
        async with anyio.create_task_group() as task_group:
            for worker in idle:
                task_group.start_soon(self._retire, worker)

    async def checkout(self) -> _WorkerProcess:
        while True:
            if self._idle:
                return self._idle.pop()
            # Wait for a prestarting worker rather than start one more: it is ready sooner.
            if not self._prestarting and self.workers_alive < self._slots:
                return await self._start()
            await self._changed.wait()

    async def _start(self) -> _WorkerProcess:
        self.workers_alive += 1
        self.workers_started += 1
        try:
            return await _WorkerProcess.start()
        except BaseException:
            self._gone()
            raise

    async def _prestart_one(self) -> None:
        worker: _WorkerProcess | None = None
        try:
            worker = await self._start()
        except _WorkerFailure as failure:
            logger.warning("could not prestart a worker process: %s", failure.message)
        finally:
            self._prestarting -= 1
        if worker is None:
            self._notify()  # waiting tasks may start a worker themselves now
        else:
            self.checkin(worker)

    def checkin(self, worker: _WorkerProcess) -> None:
        if self._max_tasks is not None and worker.tasks_run >= self._max_tasks:
            self._task_group.start_soon(self._retire, worker)
        else:
            self._idle.append(worker)
            self._notify()

    async def _retire(self, worker: _WorkerProcess) -> None:
        try:
            await worker.retire()
        finally:
            self._gone()

    async def discard(self, worker: _WorkerProcess) -> None:
        if await worker.stop() and not worker.crashed:
            self.workers_killed += 1
        self.workers_crashed += worker.crashed
        self._gone()

    def _gone(self) -> None:
        self.workers_alive -= 1
        self._notify()

    def _notify(self) -> None:
        """Wake every task waiting for a worker or a free slot; they look again."""
        self._changed.set()
        self._changed = anyio.Event()
