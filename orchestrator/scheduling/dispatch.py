"""Dispatch: what the engine does once a step has committed — start tries, call callbacks.

Each try runs as a task of the engine's task group under its own cancel scope, so a cancel or
the end of a shutdown's grace period can stop it; however it ends, its outcome goes back to the
engine's inbox as a `TryFinished`. A sync try that finds a free thread or an idle worker
needs no task (`QuickStarts`): its outcome is posted from the callback that receives it, and
a cancel abandons its thread or kills its worker, as cancelling its task did. That saves two
turns of the loop per try (about 8 -> 6 for a no-op in-process try) and tens of µs of the
loop's CPU. User callbacks run in tasks, and their failures are logged, never raised into
the engine.
"""

from __future__ import annotations

import dataclasses
import inspect
import logging
from collections.abc import Callable, Iterable
from typing import Any

import anyio
from anyio.abc import TaskGroup

from orchestrator.alerts.notifiers import BaseNotifier
from orchestrator.authoring.references import resolve_refs
from orchestrator.config import Settings
from orchestrator.crashpoints import crashpoint
from orchestrator.execution.begun_tries import BegunTries
from orchestrator.execution.capped_log import cap_log, log_over_cap
from orchestrator.execution.interface import QuickStarts, TaskExecutor
from orchestrator.execution.jobs import Outcome, TaskJob, TaskOutcome
from orchestrator.execution.try_processes import try_token
from orchestrator.loading.dagbag import DagBag
from orchestrator.scheduling.active_runs import ActiveRun, TaskInstance
from orchestrator.scheduling.decisions import Step
from orchestrator.scheduling.messages import TryFinished
from orchestrator.state import RunState
from orchestrator.store.base import TaskKey
from triggers.base import TriggerRuntime, set_runtime

logger = logging.getLogger("orchestrator.engine")

_CANCELLED = TaskOutcome(status=Outcome.FAILED, error="cancelled")
# Read as each run ends, as module constants (an enum class's attribute is slow in 3.11).
_RUN_SUCCESS, _RUN_CANCELLED = RunState.SUCCESS, RunState.CANCELLED


def _stopping() -> None:
    """What stops a try that is being stopped: nothing more."""


class Dispatcher:
    """Runs tries and callbacks for the engine; knows which tries are running."""

    def __init__(
        self,
        task_group: TaskGroup,
        *,
        settings: Settings,
        dagbag: DagBag,
        executor: TaskExecutor,
        runtime: TriggerRuntime,
        post: Callable[[TryFinished], None],
    ) -> None:
        self._tg = task_group
        self._settings = settings
        self._dagbag = dagbag
        self._executor = executor
        self._runtime = runtime
        self._post = post
        self._quick = executor if isinstance(executor, QuickStarts) else None
        self._stops: dict[TaskKey, Callable[[], None]] = {}  # running tries: what stops each
        self.begun = BegunTries(settings.state_dir)  # where tries mark that their code begins
        # on this machine; a try on Dask opens its log before it begins, as before
        self._journal = self.begun.path if settings.executor == "local" else ""
        self._log_paths: dict[TaskKey, str] = {}  # of tries started (pruned when compacting)
        self.identity = state_identity(settings)  # in every try's process token
        task_group.start_soon(self._stop_all_on_exit)

    @property
    def running(self) -> int:
        """How many tries are running now."""
        return len(self._stops)

    def act(self, step: Step) -> None:
        """Do what a committed step decided: stop and start tries, call callbacks."""
        self.stop(step.stopping)
        self.start(step.started)
        for ti, hook in step.callbacks:
            self.call_task_callback(ti, hook)
        for run in step.finished:
            self.call_run_callback(run)

    def start(self, tries: Iterable[TaskInstance]) -> None:
        for ti in tries:
            crashpoint("task_dispatched")
            try:
                job = self._job(ti)
            except (KeyError, IndexError, TypeError) as error:
                message = f"cannot resolve the task's inputs: {type(error).__name__}: {error}"
                self._post(TryFinished(ti, TaskOutcome(status=Outcome.FAILED, error=message)))
                continue
            if not self._start_now(ti, job):
                self._spawn(ti, job)
            self._log_paths[ti.key] = ti.log_path
            self.begun.started(self._running_log_paths)

    def _running_log_paths(self) -> list[str]:
        self._log_paths = {key: self._log_paths[key] for key in self._stops}
        return list(self._log_paths.values())

    def stop(self, tries: Iterable[TaskInstance]) -> None:
        """Cancel these tries, if still running: each reports a "cancelled" outcome."""
        for ti in tries:
            stop = self._stops.get(ti.key)
            if stop is not None:
                stop()

    def stop_all(self) -> None:
        for stop in list(self._stops.values()):
            stop()

    def call_task_callback(self, ti: TaskInstance, hook: str) -> None:
        for callback in _callables(getattr(ti.task.options, hook)):
            context = dataclasses.replace(ti.context(ti.log_path), error=ti.error)
            self._tg.start_soon(_call_safely, callback, context, hook)

    def call_run_callback(self, run: ActiveRun) -> None:
        hook = "on_success" if run.state is _RUN_SUCCESS else "on_failure"
        if run.state is not _RUN_CANCELLED:
            for callback in _callables(getattr(run.dag, hook)):
                self._tg.start_soon(_call_safely, callback, run.run_id, hook)

    async def _stop_all_on_exit(self) -> None:
        """When the engine's task group closes, stop the tries that have no task in it too."""
        try:
            await anyio.sleep_forever()
        finally:
            self.stop_all()

    def _start_now(self, ti: TaskInstance, job: TaskJob) -> bool:
        """Start a sync try without a task, if the executor can; False if not."""
        if self._quick is None:
            return False

        def report(outcome: TaskOutcome, log_capped: bool) -> None:
            del self._stops[ti.key]
            if log_capped:
                self._post(TryFinished(ti, outcome))
            else:  # the executor appended to the log: a task caps it, off the loop
                self._spawn(ti, job, outcome)

        stop = self._quick.start_now(job, ti.task, report)
        if stop is None:
            return False

        def stopped() -> None:
            del self._stops[ti.key]
            self._post(TryFinished(ti, _CANCELLED))

        def cancel() -> None:
            self._stops[ti.key] = _stopping  # still running until its code is stopped
            stop(stopped)

        self._stops[ti.key] = cancel
        return True

    def _spawn(self, ti: TaskInstance, job: TaskJob, outcome: TaskOutcome | None = None) -> None:
        """Run the try in a task of its own (or, given its `outcome`, only cap its log there).

        Its scope is made and counted now: the try is running from this moment, not from
        its task's first turn.
        """
        scope = anyio.CancelScope()
        self._stops[ti.key] = scope.cancel
        self._tg.start_soon(self._execute, ti, job, scope, outcome)

    async def _execute(
        self, ti: TaskInstance, job: TaskJob, scope: anyio.CancelScope, outcome: TaskOutcome | None
    ) -> None:
        set_runtime(self._runtime)  # async tasks (poking sensors) run in this task
        ended = _CANCELLED
        with scope:
            try:
                ended = await self._run_try(ti, job, outcome)
            finally:
                del self._stops[ti.key]
        self._post(TryFinished(ti, ended))

    async def _run_try(
        self, ti: TaskInstance, job: TaskJob, outcome: TaskOutcome | None
    ) -> TaskOutcome:
        if outcome is None:
            outcome = await self._executor.execute(job, ti.task)
        limit = self._settings.task_log_max_bytes
        if job.context.log_path and log_over_cap(job.context.log_path, limit):
            await anyio.to_thread.run_sync(cap_log, job.context.log_path, limit)
        return outcome

    def _job(self, ti: TaskInstance) -> TaskJob:
        context = ti.context(ti.log_path)
        inputs = resolve_refs(ti.task.inputs, ti.run.result_view(), context)
        if ti.map_index >= 0:
            inputs = {**inputs, "mapped": ti.mapped_inputs}
        in_process = ti.task.options.in_process
        resume = ti.next_call if ti.resuming else None
        return TaskJob(
            dag_id=ti.run.dag.dag_id,
            task_id=ti.task_id,
            fileloc=self._dagbag.files.get(ti.run.dag.dag_id, ti.run.dag.site.file),
            context=context,
            inputs=inputs,
            timeout=ti.task.options.timeout_seconds,
            in_process=self._settings.in_process if in_process is None else in_process,
            result_max_bytes=self._settings.result_max_bytes,
            log_max_bytes=self._settings.task_log_max_bytes,
            resume=resume,
            process_token=try_token(self.identity, *ti.key, ti.try_number),
            begun_journal=self._journal,
        )


def state_identity(settings: Settings) -> str:
    """What tells this daemon's tries from another's on the same machine: its state directory."""
    return str(settings.state_dir.resolve())


def _callables(hooks: Any) -> list[Callable[[Any], Any]]:
    """A hook's callbacks: one, or a list; notifiers are left to the alerts outbox."""
    listed = list(hooks) if isinstance(hooks, list | tuple) else [hooks]
    return [hook for hook in listed if hook is not None and not isinstance(hook, BaseNotifier)]


async def _call_safely(callback: Callable[[Any], Any], argument: Any, hook: str) -> None:
    """Run a user callback; its failure is logged and never reaches the engine."""
    try:
        if inspect.iscoroutinefunction(callback):
            await callback(argument)
        else:
            await anyio.to_thread.run_sync(callback, argument)
    except Exception:
        logger.exception("%s callback %r raised", hook, callback)
