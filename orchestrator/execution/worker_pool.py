"""Worker processes: started, reused, retired and killed for the executor.

A worker is `python -m orchestrator.execution.worker` in its own process group, speaking
newline-delimited JSON on its stdin/stdout (see `execution/worker.py`). The pool keeps idle
workers for reuse, never runs more than `slots` at once, and replaces a worker that died.
Killing a worker kills every process below it too, and, once it is dead, every process that
carries the token of the try it ran (see `execution/try_processes.py`).
"""

from __future__ import annotations

import json
import logging
import signal
import sys

import anyio
import anyio.to_thread
from anyio.abc import Process, TaskGroup

from orchestrator.errors import error_line
from orchestrator.execution.jobs import TaskOutcome
from orchestrator.execution.try_processes import stop_process_tree, stop_token_holders
from orchestrator.execution.worker import CHANNEL_LOST_EXIT, outcome_from_json
from orchestrator.execution.worker_pipes import LineTooLong, PipeClosed, WorkerPipes

logger = logging.getLogger("orchestrator.executor")

#: How long a worker may take to import and say it is ready before it counts as broken.
START_TIMEOUT = 60.0
#: How long a retiring worker may take to exit by itself before it is killed.
RETIRE_GRACE = 5.0
#: How long a worker whose pipe closed may take to exit by itself: a crashing process closes
#: its pipes a moment before it can be waited for; one that lives on closed its pipe itself.
EXIT_GRACE = 2.0
LOST_PIPE = (
    "the worker process lost its pipe to the engine while the task ran: the task closed file "
    "descriptors it did not open (e.g. os.closerange); the worker was killed"
)


class WorkerFailure(Exception):
    """A worker process failed the job: it died, timed out at start, or broke the protocol."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class WorkerDied(Exception):
    """The worker's pipe closed during a job: `WorkerProcess.died` says how it ended."""


class JobNotDelivered(Exception):
    """The worker had died while idle: the job never reached it and can go to another."""


class WorkerProcess:
    """The engine's handle on one worker process: its pipes and how many tasks it ran."""

    def __init__(self, process: Process, pipes: WorkerPipes) -> None:
        self._process = process
        self._pipes = pipes
        self.tasks_run = 0
        self.crashed = False
        self._token = ""  # the process token of the try it runs or ran last

    @classmethod
    async def start(cls) -> WorkerProcess:
        """Spawn a worker in its own process group and wait until it is ready for jobs."""
        pipes = WorkerPipes()
        stdin, stdout = pipes.worker_ends()
        try:
            process = await anyio.open_process(
                [sys.executable, "-m", "orchestrator.execution.worker"],
                stdin=stdin,
                stdout=stdout,
                stderr=None,  # the worker's own errors go to the engine's stderr
                start_new_session=True,
            )
        except OSError as error:
            pipes.close()
            raise WorkerFailure(f"cannot start a worker process: {error_line(error)}") from None
        except BaseException:
            pipes.close()
            raise
        pipes.spawned()
        worker = cls(process, pipes)
        try:
            with anyio.fail_after(START_TIMEOUT):
                await worker._receive_ready()
        except BaseException as error:
            await worker.stop()
            if isinstance(error, TimeoutError):
                raise WorkerFailure(
                    f"a worker process did not start within {START_TIMEOUT:g} s"
                ) from None
            raise
        return worker

    async def _receive_ready(self) -> None:
        try:
            line = await self._pipes.receive_line(1024)
        except (PipeClosed, LineTooLong):
            line = b""
        if line.strip() != b'{"ready":true}':
            failure = await self._died() if not line else f"it sent {line[:200]!r}"
            raise WorkerFailure(
                f"a worker process failed to start ({failure}); its error output is in the "
                "engine's stderr"
            )

    async def request(self, payload: bytes, reply_limit: int, token: str = "") -> TaskOutcome:
        """Send one job (whose processes carry `token`) and wait for its outcome.

        A dead or misbehaving worker raises.
        """
        self._accept(token)
        try:
            await self._pipes.send(payload)
        except OSError:
            self.crashed = True
            raise JobNotDelivered from None
        try:
            while (outcome := self.take_reply(reply_limit)) is None:
                await anyio.wait_readable(self._pipes.replies)
        except WorkerDied:
            raise await self.died() from None
        return outcome

    def send_now(self, payload: bytes, token: str) -> bool:
        """`request`'s sending half, done now if it can be without waiting; else False."""
        self._accept(token)
        try:
            return self._pipes.send_now(payload)
        except OSError:
            self.crashed = True
            raise JobNotDelivered from None

    @property
    def replies(self) -> int:
        """The fd the worker's reply arrives on: `take_reply` has news once it is readable."""
        return self._pipes.replies

    def take_reply(self, reply_limit: int) -> TaskOutcome | None:
        """The job's outcome if its reply has come, else None; `WorkerFailure` for a bad one.

        `WorkerDied` if the pipe closed: `died` says how.
        """
        try:
            line = self._pipes.take_line(reply_limit)
        except PipeClosed:
            raise WorkerDied from None
        except LineTooLong:
            raise WorkerFailure(
                f"the worker process sent a reply longer than {reply_limit} bytes, which no "
                "valid outcome is; the worker was killed"
            ) from None
        if line is None:
            return None
        outcome = _outcome_of_reply(line)
        self.tasks_run += 1
        return outcome

    async def died(self) -> WorkerFailure:
        """What to report for a worker whose pipe closed during a job."""
        return WorkerFailure(f"worker process died: {await self._died()}")

    def _accept(self, token: str) -> None:
        self._token = token
        if self._process.returncode is not None:
            self.crashed = True
            raise JobNotDelivered

    async def _died(self) -> str:
        """How the worker ended, once its pipe closed; also kills what it left running."""
        self.crashed = True
        with anyio.move_on_after(EXIT_GRACE):
            code = await self._process.wait()
            await self._stop_processes()  # the task's orphans, re-parented away from it
            return LOST_PIPE if code == CHANNEL_LOST_EXIT else describe_exit(code)
        await self.stop()
        return LOST_PIPE

    async def stop(self) -> bool:
        """SIGKILL the worker with every process below it and reap it; True if it was alive."""
        alive = self._process.returncode is None
        with anyio.CancelScope(shield=True):
            await self._stop_processes()
            await self._process.aclose()
            self._pipes.close()
        return alive

    async def _stop_processes(self) -> None:
        """Kill the worker's process tree, then whatever of its last try still runs elsewhere."""
        pid, token = self._process.pid, self._token
        # Once reaped, its pid may be another process's: then only the token is safe to follow.
        reaped = self._process.returncode is not None

        def stop_all() -> None:
            if not reaped:
                stop_process_tree(pid)
            if token:
                stop_token_holders([token])

        await anyio.to_thread.run_sync(stop_all)

    async def retire(self) -> None:
        """Let the worker exit by itself (end of its stdin); kill it if it does not in time."""
        try:
            with anyio.move_on_after(RETIRE_GRACE):
                self._pipes.close_requests()
                await self._process.wait()
        finally:  # also when cancelled: the executor is closing
            if self._process.returncode is None:
                await self.stop()
            else:
                with anyio.CancelScope(shield=True):
                    await self._process.aclose()
                    self._pipes.close()


def _outcome_of_reply(line: bytes) -> TaskOutcome:
    try:
        data = json.loads(line)
    except ValueError as error:
        raise WorkerFailure(
            f"the worker process sent a reply that is not JSON ({error_line(error)}); "
            "the worker was killed"
        ) from None
    try:
        return outcome_from_json(data)
    except ValueError as error:
        raise WorkerFailure(
            f"the worker process sent a reply that is not an outcome ({error_line(error)}); "
            "the worker was killed"
        ) from None


def describe_exit(code: int) -> str:
    """`exit code 7` or `killed by signal SIGSEGV`, from a process's return code."""
    if code >= 0:
        return f"exit code {code}"
    try:
        name = signal.Signals(-code).name
    except ValueError:
        name = f"signal {-code}"
    hint = " (out of memory?)" if -code == signal.SIGKILL else ""
    return f"killed by signal {name}{hint}"


class WorkerPool:
    """At most `slots` live worker processes; idle ones are reused, most recent first.

    Every process counts against `slots` from its spawn until it is reaped, including the
    ones starting up and the ones retiring, so the limit holds at every moment.
    """

    def __init__(self, *, slots: int, max_tasks: int | None, task_group: TaskGroup) -> None:
        self._slots = slots
        self._max_tasks = max_tasks
        self._task_group = task_group
        self._idle: list[WorkerProcess] = []
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

    def take_idle(self) -> WorkerProcess | None:
        """An idle worker, if one is ready now (give it back with `checkin` or `discard`)."""
        return self._idle.pop() if self._idle else None

    async def checkout(self) -> WorkerProcess:
        while True:
            if self._idle:
                return self._idle.pop()
            # Wait for a prestarting worker rather than start one more: it is ready sooner.
            if not self._prestarting and self.workers_alive < self._slots:
                return await self._start()
            await self._changed.wait()

    async def _start(self) -> WorkerProcess:
        self.workers_alive += 1
        self.workers_started += 1
        try:
            return await WorkerProcess.start()
        except BaseException:
            self._gone()
            raise

    async def _prestart_one(self) -> None:
        worker: WorkerProcess | None = None
        try:
            worker = await self._start()
        except WorkerFailure as failure:
            logger.warning("could not prestart a worker process: %s", failure.message)
        finally:
            self._prestarting -= 1
        if worker is None:
            self._notify()  # waiting tasks may start a worker themselves now
        else:
            self.checkin(worker)

    def checkin(self, worker: WorkerProcess) -> None:
        if self._max_tasks is not None and worker.tasks_run >= self._max_tasks:
            self._task_group.start_soon(self._retire, worker)
        else:
            self._idle.append(worker)
            self._notify()

    async def _retire(self, worker: WorkerProcess) -> None:
        try:
            await worker.retire()
        finally:
            self._gone()

    async def discard(self, worker: WorkerProcess) -> None:
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
