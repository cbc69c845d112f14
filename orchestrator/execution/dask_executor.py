"""The Dask executor: sync tasks run on Dask workers; the daemon stays the source of truth.

```toml
executor = "dask"
dask_address = "tcp://10.0.0.5:8786"   # leave it out to start a LocalCluster
```

Async tasks, in-process tasks, sensors and triggers stay in the daemon's loop (through the
local executor, which starts no worker process for them). Every other try, already recorded
by the scheduler as queued with its try number before it comes here, is submitted as one
Dask task (`execution/dask_worker.run_try`) under a key naming the DAG, task, run and try
plus a random suffix: its *attempt*. Then:

- **retries**: Dask's are off (`retries=0`, and `allowed-failures` 0 on the scheduler, see
  `dask_connection`): a worker that dies, or a scheduler that goes away, fails the try as
  lost, and *our* retry policy decides, counted and visible like any failure;
- **outcome**: the worker's reply passes the same checks as a local worker's (`outcome`
  fields, result size); an attempt settles once, and a reply or a log chunk of an attempt
  that is no longer running (cancelled, lost, replaced) is dropped;
- **cancel and timeout**: the timeout is enforced on the worker, which kills the task's
  process; a cancel releases the Dask task and kills the process on whichever worker runs it;
- **log**: chunks arrive on the `orchestrator-log` topic while the try runs and go to the
  try's log on the daemon's disk, held to `task_log_max_bytes`; the rest comes with the reply,
  and so do an Airflow task's rendered template fields, written beside that log;
- **resources**: `@task(resources={"GPU": 1})` becomes Dask worker resources; while no worker
  offers them, the try waits and its log says so;
- **DAG code**: the DAG file's source at dispatch goes with the job (see `dask_worker`), so the
  workers need `orchestrator` and the DAGs' dependencies installed, not the DAGs folder.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
from distributed import Client, Future
from distributed.client import FutureCancelledError

from orchestrator.airflow_compat.rendered import keep_rendered
from orchestrator.authoring.tasks import Task
from orchestrator.config import Settings
from orchestrator.errors import TaskError, error_line
from orchestrator.execution.capped_log import CappedLog
from orchestrator.execution.dask_connection import WORKER_CALL_TIMEOUT, DaskConnection
from orchestrator.execution.dask_worker import (
    run_try,
    stop_try,
    versions,
    worker_resources,
)
from orchestrator.execution.executor import Executor
from orchestrator.execution.interface import ExecutorStatus
from orchestrator.execution.invoke import is_async_job
from orchestrator.execution.jobs import Outcome, TaskJob, TaskOutcome
from orchestrator.execution.log_files import open_log_fd
from orchestrator.execution.worker import job_to_json, outcome_from_json

logger = logging.getLogger("orchestrator.executor")

LOST = "lost: the Dask worker or scheduler went away"
#: Seconds the daemon waits for log chunks a reply says were sent but have not arrived.
LOG_CATCH_UP = 5.0
#: Seconds a try waits for the connection before its log (and the daemon's) says it waits.
QUIET_WAIT = 1.0


class _Attempt:
    """One submission of one try: its key, token and the daemon's copy of its log."""

    def __init__(self, key: str, job: TaskJob) -> None:
        self.key = key
        self.token = job.process_token or key
        self.received = 0
        self.caught_up = anyio.Event()
        self.expected: int | None = None
        path = job.context.log_path
        self._fd = open_log_fd(path) if path else None
        self._log = (
            CappedLog(self._fd, job.log_max_bytes) if self._fd and job.log_max_bytes else None
        )

    def write(self, data: bytes, *, counted: bool = True) -> None:
        """Append to the try's log (a few KiB at a time: cheap enough for the loop)."""
        if counted:
            self.received += len(data)
            if self.expected is not None and self.received >= self.expected:
                self.caught_up.set()
        try:
            if self._log is not None:
                self._log.write(data)
            elif self._fd is not None:
                os.write(self._fd, data)
        except OSError as error:
            logger.warning("cannot write to the log of %s: %s", self.key, error_line(error))

    def note(self, line: str) -> None:
        self.write(f"{line}\n".encode(), counted=False)

    def close(self) -> None:
        if self._log is not None:
            self._log.close()
        elif self._fd is not None:
            os.close(self._fd)


class DaskExecutor:
    """Runs sync tries on Dask workers, the rest in the daemon. Create it with `open`."""

    def __init__(self, local: Executor, *, owner: str, address: str | None) -> None:
        self._local = local
        self._owner = owner
        self._attempts: dict[str, _Attempt] = {}
        self._sources: dict[str, tuple[tuple[int, int], str]] = {}
        self._versions = versions()
        self.connection = DaskConnection(address, owner=owner, on_log=self._on_log)
        self.tasks_submitted = 0
        self.tries_lost = 0
        self._told_waiting = False

    @classmethod
    @asynccontextmanager
    async def open(cls, settings: Settings, *, state_identity: str) -> AsyncIterator[DaskExecutor]:
        """Connected (or connecting, in the background) to `settings.dask_address`."""
        owner = hashlib.sha256(state_identity.encode()).hexdigest()[:16]
        async with (
            Executor.open(
                slots=settings.slots, worker_max_tasks=settings.worker_max_tasks
            ) as local,
            anyio.create_task_group() as task_group,
        ):
            executor = cls(local, owner=owner, address=settings.dask_address)
            await task_group.start(executor.connection.run)
            try:
                yield executor
            finally:
                task_group.cancel_scope.cancel()

    @property
    def status(self) -> str:
        """One line on the connection: connected, or why not and when it tries again."""
        return self.connection.status

    def describe(self) -> ExecutorStatus:
        """Dask: connected to the scheduler (how many workers), or why not."""
        connection = self.connection
        return ExecutorStatus(
            kind="dask",
            connected=connection.client is not None,
            address=connection.address,
            workers=connection.workers,
            detail=connection.status,
        )

    async def execute(self, job: TaskJob, task: Task) -> TaskOutcome:
        """Run one try: on Dask if it is sync code in a worker process, else in the daemon."""
        try:
            in_daemon = job.in_process or is_async_job(task, job)
        except TaskError:
            in_daemon = True  # the local executor reports it
        if in_daemon:
            return await self._local.execute(job, task)
        return await self._run_on_dask(job, task)

    async def _run_on_dask(self, job: TaskJob, task: Task) -> TaskOutcome:
        key = _attempt_key(job)
        try:
            attempt = _Attempt(key, job)
        except OSError as error:
            message = f"cannot write the try's log {job.context.log_path}: {error_line(error)}"
            return TaskOutcome(status=Outcome.FAILED, error=message)
        self._attempts[key] = attempt
        try:
            try:
                payload = self._payload(job, attempt)
            except (OSError, TypeError, ValueError) as error:
                return _failed(
                    attempt, f"cannot send task {job.task_id!r} to Dask: {error_line(error)}"
                )
            client = await self._client_for(attempt)
            resources = dict(task.options.resources or {})
            if resources:
                await self._note_missing_resources(client, resources, attempt)
            future = client.submit(
                run_try, payload, key=key, pure=False, retries=0, resources=resources or None
            )
            self.tasks_submitted += 1
            return await self._outcome_of(client, future, attempt, job)
        finally:
            del self._attempts[key]
            attempt.close()

    def _payload(self, job: TaskJob, attempt: _Attempt) -> dict[str, Any]:
        return {
            "job": json.dumps(job_to_json(job), separators=(",", ":"), ensure_ascii=False),
            "source": self._source(job.fileloc),
            "versions": self._versions,
            "attempt": attempt.key,
            "owner": self._owner,
        }

    def _source(self, path: str) -> str:
        """The DAG file's text now: what the worker imports, whatever changes here later."""
        status = os.stat(path)
        version = (status.st_mtime_ns, status.st_size)
        cached = self._sources.get(path)
        if cached is None or cached[0] != version:
            with open(path, encoding="utf-8") as file:
                cached = (version, file.read())
            self._sources[path] = cached
        return cached[1]

    async def _client_for(self, attempt: _Attempt) -> Client:
        """The client; a try that really waits for it (not the first connect) says so, once."""
        client = self.connection.client
        if client is not None:
            return client
        with anyio.move_on_after(QUIET_WAIT):
            return await self.connection.wait_connected()
        attempt.note(f"waiting for Dask: {self.connection.status}")
        if not self._told_waiting:
            self._told_waiting = True
            logger.warning("tries bound for Dask wait: %s", self.connection.status)
        client = await self.connection.wait_connected()
        self._told_waiting = False
        attempt.note("connected to Dask; submitting the task")
        return client

    async def _note_missing_resources(
        self, client: Client, wanted: dict[str, float], attempt: _Attempt
    ) -> None:
        offered: dict[str, dict[str, float]] = await client.run_on_scheduler(worker_resources)
        if any(all(have.get(k, 0) >= v for k, v in wanted.items()) for have in offered.values()):
            return
        shown = ", ".join(f"{k}={v:g}" for k, v in wanted.items())
        seen = sorted({f"{k}={v:g}" for have in offered.values() for k, v in have.items()})
        message = (
            f"waiting: no Dask worker offers {shown} (workers offer: {', '.join(seen) or 'none'});"
            " the task runs once a worker started with them joins (dask worker --resources)"
        )
        attempt.note(message)
        logger.warning("%s: %s", attempt.key, message)

    async def _outcome_of(
        self, client: Client, future: Future[Any], attempt: _Attempt, job: TaskJob
    ) -> TaskOutcome:
        try:
            reply = await _reply_of(future)
        except BaseException:  # cancelled: stop the task wherever it runs, then go on
            with anyio.CancelScope(shield=True):
                await self._stop(client, future, attempt)
            raise
        if isinstance(reply, str):
            self.tries_lost += 1
            with anyio.CancelScope(shield=True):
                await self._stop(client, future, attempt)
            return _failed(attempt, reply)
        return await self._settle(reply, attempt, job)

    async def _stop(self, client: Client, future: Future[Any], attempt: _Attempt) -> None:
        with anyio.move_on_after(WORKER_CALL_TIMEOUT):
            try:
                await future.cancel()
                await client.run(stop_try, attempt.token, on_error="ignore")
            except Exception as error:  # the scheduler is gone: nothing runs there any more
                logger.info("could not stop %s on Dask: %s", attempt.key, error_line(error))

    async def _settle(self, reply: Any, attempt: _Attempt, job: TaskJob) -> TaskOutcome:
        """The worker's reply, checked like a local worker's; its log completed first."""
        try:
            tail, shipped = bytes(reply["log"]), int(reply["shipped"])
            outcome = outcome_from_json(json.loads(reply["outcome"]))
        except (KeyError, TypeError, ValueError) as error:
            return _failed(
                attempt, f"the Dask worker sent a reply that is not an outcome ({error})"
            )
        await self._catch_up(attempt, shipped)
        attempt.write(tail, counted=False)
        _keep_rendered(reply.get("rendered"), job)
        result = outcome.result_json
        if result is not None and len(result.encode()) > job.result_max_bytes:
            return _failed(attempt, f"the result of task {job.task_id!r} is over result_max_bytes")
        return outcome

    async def _catch_up(self, attempt: _Attempt, shipped: int) -> None:
        """Wait (briefly) for log chunks sent before the reply; note it if some never came."""
        if attempt.received >= shipped:
            return
        attempt.expected = shipped
        with anyio.move_on_after(LOG_CATCH_UP):
            await attempt.caught_up.wait()
        if attempt.received < shipped:
            attempt.note(f"[... {shipped - attempt.received} bytes of output lost on the way ...]")

    def _on_log(self, event: Any) -> None:
        """A chunk of a running try's output; chunks of attempts no longer running are dropped."""
        try:
            message = event[1]
            attempt = self._attempts.get(message["attempt"])
            if attempt is not None:
                attempt.write(bytes(message["data"]))
        except (KeyError, TypeError, IndexError):
            logger.warning("dropped a malformed log event from Dask: %.200r", event)


async def _reply_of(future: Future[Any]) -> dict[str, Any] | str:
    """The task's reply, or why it is lost (a dead worker, a lost scheduler)."""
    try:
        result = await future._result(raiseit=False)
    except FutureCancelledError as error:
        return f"{LOST} ({error.reason})"
    except (OSError, anyio.BrokenResourceError) as error:
        return f"{LOST} ({error_line(error)})"
    if isinstance(result, FutureCancelledError):
        return f"{LOST} ({result.reason})"
    if isinstance(result, tuple) and len(result) == 3 and isinstance(result[1], BaseException):
        return _lost_by_error(result[1])
    if isinstance(result, BaseException):
        return _lost_by_error(result)
    if not isinstance(result, dict):
        return f"the Dask worker sent {type(result).__name__}, not a reply"
    return result


def _lost_by_error(error: BaseException) -> str:
    worker = getattr(getattr(error, "last_worker", None), "address", None)
    if worker is not None:  # KilledWorker
        return f"{LOST} (worker {worker} died while running it)"
    return f"the try failed on its Dask worker before the task ran: {error_line(error)}"


def _attempt_key(job: TaskJob) -> str:
    """The Dask key of one submission: DAG, task, run and try, and a suffix of its own."""
    context = job.context
    where = f"{job.task_id}[{context.map_index}]" if context.map_index >= 0 else job.task_id
    return (
        f"orchestrator-{job.dag_id}.{where}-{context.run_id}-try{context.try_number}"
        f"-{uuid.uuid4().hex[:8]}"
    )


def _keep_rendered(text: Any, job: TaskJob) -> None:
    """The rendered template fields the worker shipped back, beside the daemon's copy of the log."""
    if not isinstance(text, str) or not job.context.log_path:
        return
    try:
        keep_rendered(job.context.log_path, text)
    except OSError as error:
        logger.warning(
            "cannot record the rendered fields of %s: %s", job.task_id, error_line(error)
        )


def _failed(attempt: _Attempt, error: str) -> TaskOutcome:
    attempt.note(error)
    return TaskOutcome(status=Outcome.FAILED, error=error)
