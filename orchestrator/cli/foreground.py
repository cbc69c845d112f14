"""The work of `orchestrator run`: one run in this process, followed live, then a summary.

Ctrl-C (or SIGTERM) cancels the run through the engine and waits for it to stop, so no task
is left running and the store records the run as cancelled; a second Ctrl-C stops at once.

A run whose tasks wait on a previous run that failed (`depends_on_past`) would wait forever
here: nothing in this process can clear the old task. So once the run can go no further
(`PastRuns.stuck`), the command stops with an error saying how to go on; see `_stuck_error`.

This module imports the engine and rich, so the command imports it only when it runs.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import AsyncIterable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import anyio
from rich.console import Console

from orchestrator.authoring.dag import DAG
from orchestrator.changes import Change
from orchestrator.cli.daemonlink import is_daemon
from orchestrator.cli.display import RunDisplay
from orchestrator.cli.exit_codes import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK
from orchestrator.cli.output import describe_dag_error, warn
from orchestrator.cli.summary import print_summary
from orchestrator.config import Settings
from orchestrator.daemon.state_lock import StateDirLock, StateDirLockedError
from orchestrator.errors import RunError, RunStuckError
from orchestrator.loading.dagbag import DagBag, load_dag_bag
from orchestrator.loading.importcheck import ImportLimits
from orchestrator.scheduling.engine import Engine
from orchestrator.scheduling.past_runs import PastWait
from orchestrator.state import RunState
from orchestrator.store.records import RunRecord


@dataclass(frozen=True)
class RunAsked:
    """The run the command was asked for: its conf, and whether its tasks ignore their past."""

    conf: dict[str, Any] = field(default_factory=dict)
    ignore_depends_on_past: bool = False


def run_in_foreground(settings: Settings, dag_id: str, asked: RunAsked) -> int:
    """Run `dag_id` once as `asked`, show it, and return the process exit code.

    Raises `DagNotFoundError` (with the known ids and import errors) before starting anything,
    and `RunStuckError` when the run waits on a previous run this process cannot change.
    """
    limits = ImportLimits.of(settings)
    dagbag = load_dag_bag(
        settings.dags_folder,
        pools=settings.pool_slots(),
        limits=limits,
        state_dir=settings.state_dir,
    )
    dag = dagbag.get(dag_id)
    for error in dagbag.errors:  # other files' problems must not stop this run
        warn(describe_dag_error(error))
    # Bound to the real stdout now: while tasks run in this process, sys.stdout is routed
    # into their log files.
    console = Console(file=sys.stdout, soft_wrap=True)  # a long log path stays one line
    try:
        return anyio.run(_run, settings, dagbag, dag, asked, console)
    except KeyboardInterrupt:  # Ctrl-C before our handler was installed: nothing to clean
        return EXIT_INTERRUPTED


@dataclass
class _Outcome:
    """How following the run ended: its final record (None if we stopped early)."""

    run_id: str
    record: RunRecord | None = None
    stuck: list[PastWait] = field(default_factory=list)  # what holds the run for good
    interrupts: int = 0
    log_paths: tuple[str, ...] = ()


async def _run(
    settings: Settings, dagbag: DagBag, dag: DAG, asked: RunAsked, console: Console
) -> int:
    with await _lock_state_dir(settings, dag.dag_id):
        return await _run_locked(settings, dagbag, dag, asked, console)


async def _lock_state_dir(settings: Settings, dag_id: str) -> StateDirLock:
    """Hold the state directory for the run's life, as the daemon does for its own.

    The engine must be the store's only writer, and recovery relies on the lock to know that
    no live process owns a running try. A daemon holding it can run the DAG itself.
    """
    command = f"orchestrator run {dag_id}"
    acquire = partial(StateDirLock.acquire, settings.state_dir, command=command)
    try:
        return await anyio.to_thread.run_sync(acquire)
    except StateDirLockedError as error:
        if not is_daemon(error.holder):
            raise
        raise RunError(
            f"a daemon is running on {settings.state_dir} ({error.holder.describe()}); "
            f"use `orchestrator trigger {dag_id}` instead, and the daemon runs it at once"
        ) from None


async def _run_locked(
    settings: Settings, dagbag: DagBag, dag: DAG, asked: RunAsked, console: Console
) -> int:
    async with Engine.open(settings, dagbag=dagbag, recover=False) as engine:
        outcome = await _trigger_and_follow(engine, dag, asked, console)
        if outcome.stuck:
            await _finish_started_runs(engine, console, but=outcome.run_id)
            raise await _stuck_error(engine, dag.dag_id, outcome.run_id, outcome.stuck)
        if outcome.record is None:
            console.print("Stopped without waiting for the run's tasks to end.", style="bold")
            return EXIT_INTERRUPTED
        await print_summary(
            console,
            engine.store,
            dag,
            outcome.record,
            logs_dir=settings.logs_dir,
            log_paths=outcome.log_paths,
        )
        await _finish_started_runs(engine, console)
    if outcome.interrupts:
        return EXIT_INTERRUPTED
    return EXIT_OK if outcome.record.state is RunState.SUCCESS else EXIT_FAILED


async def _finish_started_runs(engine: Engine, console: Console, *, but: str = "") -> None:
    """Drive the runs the run's tasks started (`trigger_run`) to their end, as a daemon would:
    closing the engine now would interrupt them. Their states do not change the exit code."""
    while started := sorted(set(engine.scheduler.runs) - {but}):
        console.print(f"Waiting for the runs its tasks started: {', '.join(started)}")
        for run_id in started:
            record = await engine.wait(run_id)
            console.print(f"Run {run_id} of {record.dag_id}: {record.state}")


async def _trigger_and_follow(
    engine: Engine, dag: DAG, asked: RunAsked, console: Console
) -> _Outcome:
    # Subscribed before triggering, so not one change of the run is missed.
    async with engine.subscribe() as changes:
        ignore = asked.ignore_depends_on_past
        run_id = await engine.trigger(dag.dag_id, asked.conf, ignore_depends_on_past=ignore)
        display = RunDisplay(dag, run_id=run_id, console=console, live=_is_terminal(console))
        display.seed(await engine.store.list_task_instances(run_id))
        with display:
            outcome = await _follow(engine, run_id, changes, display)
            if outcome.record is not None or outcome.stuck:
                display.finish(await engine.store.list_task_instances(run_id))
        outcome.log_paths = tuple(display.log_paths)
        return outcome


async def _follow(
    engine: Engine, run_id: str, changes: AsyncIterable[Change], display: RunDisplay
) -> _Outcome:
    """Feed the display until the run ends (or is stuck), cancelling the run on Ctrl-C."""
    outcome = _Outcome(run_id)
    async with anyio.create_task_group() as group:
        group.start_soon(display.follow, changes)
        group.start_soon(_cancel_on_interrupt, engine, run_id, display, group.cancel_scope, outcome)
        group.start_soon(_stop_when_stuck, engine, group.cancel_scope, outcome)
        outcome.record = await engine.wait(run_id)
        group.cancel_scope.cancel()
    return outcome


async def _cancel_on_interrupt(
    engine: Engine,
    run_id: str,
    display: RunDisplay,
    scope: anyio.CancelScope,
    outcome: _Outcome,
) -> None:
    """First Ctrl-C: cancel the run and keep waiting for it. Second: stop waiting at once."""
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for _signal in signals:
            outcome.interrupts += 1
            if outcome.interrupts > 1:
                scope.cancel()
                return
            display.note("Cancelling the run (press Ctrl-C again to stop at once)...")
            try:
                await engine.cancel(run_id)
            except RunError:
                pass  # it finished while we were asked: nothing left to cancel


async def _stop_when_stuck(engine: Engine, scope: anyio.CancelScope, outcome: _Outcome) -> None:
    """Stop following once the run waits on its past and nothing else in it can move.

    Only a change can make it so, so it is asked again after each one. Here, unlike under a
    daemon, that is final: the state directory is ours, so no one can clear the old task.
    """
    async with engine.subscribe() as changes:
        while not (stuck := _stuck(engine, outcome.run_id)):
            await changes.receive()
    outcome.stuck = stuck
    scope.cancel()


def _stuck(engine: Engine, run_id: str) -> list[PastWait]:
    run = engine.scheduler.runs.get(run_id)
    return [] if run is None else engine.scheduler.past.stuck(run)


async def _stuck_error(
    engine: Engine, dag_id: str, run_id: str, waits: list[PastWait]
) -> RunStuckError:
    """Why the run can go no further here, and how to go on.

    The run is left unfinished in the store, not cancelled: cancelled, its waiting tasks would
    hold the DAG's next run in turn (as any cancelled task does), so the user would have two
    runs to clear instead of one. Left as a daemon's shutdown leaves its runs, it loses
    nothing: `orchestrator daemon` picks it up and its tasks run once the old task succeeded.
    """
    lines = [f"run {run_id} of {dag_id} cannot go on: tasks that depend on their past wait on"]
    fixes: list[str] = []
    for wait in waits:
        previous = await engine.store.get_run(wait.previous_run_id)
        states = "/".join(sorted(set(wait.states)))
        if all(state.finished for state in wait.states):
            ended = f"ended {states}"
            fixes.append(f"orchestrator tasks clear {wait.previous_run_id} {wait.previous_task_id}")
        else:
            run_state = "gone" if previous is None else previous.state
            ended = f"is {states} in a run left {run_state}, which no process drives"
        lines.append(
            f"  {wait.task_id}: the previous run's {wait.previous_task_id} "
            f"({wait.previous_run_id}) {ended}"
        )
    if fixes:
        clear = ", ".join(f"`{fix}`" for fix in dict.fromkeys(fixes))
        daemon = f"clear the old task ({clear}) and start `orchestrator daemon`: it reruns it"
    else:
        daemon = "start `orchestrator daemon`: it drives the previous run"
    lines += [
        f"Run {run_id} is left unfinished. To go on, {daemon}, then this run; or run again "
        f"without waiting on the past: `orchestrator run {dag_id} --ignore-depends-on-past`",
    ]
    return RunStuckError("\n".join(lines))


def _is_terminal(console: Console) -> bool:
    """A real terminal, not one forced by FORCE_COLOR: a CI log must never get the live table."""
    isatty = getattr(console.file, "isatty", None)
    return bool(isatty is not None and isatty()) and not console.is_dumb_terminal
