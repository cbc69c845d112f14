"""What wakes the engine: the messages its loop receives, and the crash points they pass.

Everything that can change a decision arrives as a message in the engine's inbox — a try
finished, a timer came due (an alert's deadline among them), a trigger ended, a user cancelled
or cleared a run, a run trigger fired (the run starter's own messages, `StarterMessage`).
One wake-up handles every message that arrived since the last one, in one scheduling step and
one transaction.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import anyio

from orchestrator.crashpoints import crash_armed, crashpoint
from orchestrator.errors import RunError
from orchestrator.execution.jobs import Outcome, TaskOutcome
from orchestrator.scheduling.active_runs import ActiveRun, TaskInstance
from orchestrator.scheduling.autostart import DagDue, SourceEvent, StarterMessage
from orchestrator.scheduling.deferred import Timer
from orchestrator.scheduling.run_timeouts import RUN_TIMEOUT
from orchestrator.store.base import TaskKey
from orchestrator.store.records import RunRecord
from orchestrator.waiting.triggerer import TriggerOutcome


@dataclass(frozen=True)
class TryFinished:
    """A try of `ti` ended (the executor's report, or "cancelled" when its scope was cancelled)."""

    ti: TaskInstance
    outcome: TaskOutcome


@dataclass(frozen=True)
class CancelRequest:
    """A user's cancel; or, with `timed_out_at`, a run's deadline (`run_timeouts`) come."""

    run_id: str
    timed_out_at: float | None = None


@dataclass(eq=False)
class ClearRequest:
    """A clear, applied in a step and answered (`done`) once the step committed or refused it.

    `stored` is the finished run as the store has it, when the scheduler does not hold it.
    """

    run_id: str
    task_ids: tuple[str, ...]
    downstream: bool
    stored: tuple[RunRecord, ActiveRun] | None
    done: anyio.Event = field(default_factory=anyio.Event)
    cleared: list[TaskKey] = field(default_factory=list)
    error: RunError | None = None
    missed: bool = False  # the run finished before the step: read it from the store, again


@dataclass(frozen=True)
class TimerDue:
    timer: Timer


@dataclass(frozen=True)
class TriggerEnded:
    key: TaskKey
    outcome: TriggerOutcome


@dataclass(frozen=True)
class AlertDue:
    """A proactive alert's deadline came: nothing to decide, the step's outbox looks."""


EngineMessage = TryFinished | CancelRequest | ClearRequest | TimerDue | TriggerEnded | AlertDue
Message = EngineMessage | StarterMessage


def timer_message(timer: Timer) -> Message:
    """What a timer coming due means: a DAG's schedule, an alert's deadline, or a task's wait."""
    if timer.kind == "alert":
        return AlertDue()
    if timer.kind == RUN_TIMEOUT:
        return CancelRequest(timer.key[0], timed_out_at=timer.due)
    return DagDue(timer.key[0], "dag") if timer.kind == "dag" else TimerDue(timer)


def crash_before_commit(inbox: list[Message]) -> None:
    """Crash points of the crash tests (no-ops unless ORCHESTRATOR_CRASH_AT names one)."""
    if not crash_armed():
        return  # every step passes here: no scan of its messages in production
    if any(isinstance(message, SourceEvent) for message in inbox):
        crashpoint("event_received")
    if _any_success(inbox):
        crashpoint("task_succeeded")


def crash_after_commit(inbox: list[Message], runs_created: int) -> None:
    if not crash_armed():
        return
    if runs_created and any(isinstance(message, SourceEvent) for message in inbox):
        crashpoint("run_committed")
    if runs_created and any(isinstance(message, DagDue) for message in inbox):
        crashpoint("schedule_tick")
    if _any_success(inbox):
        crashpoint("success_committed")


def _any_success(inbox: list[Message]) -> bool:
    return any(
        isinstance(message, TryFinished) and message.outcome.status is Outcome.SUCCESS
        for message in inbox
    )
