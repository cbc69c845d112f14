"""Task-instance and run states, and the one table of allowed transitions.

The store refuses any transition not listed here, so a bug in the scheduler shows up as a
clear error instead of a silently wrong history.
"""

from __future__ import annotations

from enum import StrEnum


class TaskState(StrEnum):
    """Where one task instance (one task in one run) stands."""

    NONE = "none"  # created with its run; its upstream tasks have not finished
    SCHEDULED = "scheduled"  # its dependencies are met; waiting for pool and slot
    QUEUED = "queued"  # a slot is reserved; handed to the executor
    RUNNING = "running"  # its code is executing (one try)
    DEFERRED = "deferred"  # waiting on a trigger, holding no slot
    UP_FOR_RETRY = "up_for_retry"  # a try failed; the next one starts after the backoff
    SUCCESS = "success"  # finished; its result is recorded
    FAILED = "failed"  # finished without success and no retries left
    SKIPPED = "skipped"  # not run: a branch went elsewhere, or upstreams were skipped
    UPSTREAM_FAILED = "upstream_failed"  # not run: its trigger rule can no longer be met
    CANCELLED = "cancelled"  # not finished: its run was cancelled

    @property
    def finished(self) -> bool:
        return self in FINISHED_TASK_STATES


FINISHED_TASK_STATES = frozenset(
    {
        TaskState.SUCCESS,
        TaskState.FAILED,
        TaskState.SKIPPED,
        TaskState.UPSTREAM_FAILED,
        TaskState.CANCELLED,
    }
)

_T = TaskState
TASK_TRANSITIONS: dict[TaskState, frozenset[TaskState]] = {
    _T.NONE: frozenset({_T.SCHEDULED, _T.SKIPPED, _T.UPSTREAM_FAILED, _T.CANCELLED}),
    _T.SCHEDULED: frozenset({_T.QUEUED, _T.DEFERRED, _T.CANCELLED, _T.SKIPPED}),
    _T.QUEUED: frozenset({_T.RUNNING, _T.SCHEDULED, _T.CANCELLED, _T.FAILED, _T.UP_FOR_RETRY}),
    # running -> scheduled: a resume (after a deferral) caught by a restart runs again.
    _T.RUNNING: frozenset(
        {
            _T.SUCCESS,
            _T.FAILED,
            _T.UP_FOR_RETRY,
            _T.DEFERRED,
            _T.SKIPPED,
            _T.CANCELLED,
            _T.SCHEDULED,
        }
    ),
    _T.DEFERRED: frozenset(
        {_T.SCHEDULED, _T.SUCCESS, _T.FAILED, _T.UP_FOR_RETRY, _T.CANCELLED, _T.SKIPPED}
    ),
    _T.UP_FOR_RETRY: frozenset({_T.SCHEDULED, _T.CANCELLED}),
    # The "clear" transitions: a user clears a finished task instance (`orchestrator tasks
    # clear`, `Engine.clear`) so that it runs again. The scheduler itself never leaves a
    # finished state; only `orchestrator.scheduling.run_edits` does, on a user's request.
    _T.SUCCESS: frozenset({_T.NONE}),
    _T.FAILED: frozenset({_T.NONE}),
    _T.SKIPPED: frozenset({_T.NONE}),
    _T.UPSTREAM_FAILED: frozenset({_T.NONE}),
    _T.CANCELLED: frozenset({_T.NONE}),
}


class RunState(StrEnum):
    """Where one run of a DAG stands."""

    QUEUED = "queued"  # created; waiting for `max_active_runs` to admit it
    RUNNING = "running"  # admitted; its tasks are being scheduled
    SUCCESS = "success"  # every leaf task ended in success or skipped
    FAILED = "failed"  # some leaf task failed or could not run
    CANCELLED = "cancelled"  # a user cancelled it; running tasks were killed

    @property
    def finished(self) -> bool:
        return self in (RunState.SUCCESS, RunState.FAILED, RunState.CANCELLED)


_R = RunState
RUN_TRANSITIONS: dict[RunState, frozenset[RunState]] = {
    _R.QUEUED: frozenset({_R.RUNNING, _R.CANCELLED}),
    _R.RUNNING: frozenset({_R.SUCCESS, _R.FAILED, _R.CANCELLED}),
    # The "clear" transitions: a finished run whose task instances a user cleared is queued
    # again, and admitted under `max_active_runs` like any other run.
    _R.SUCCESS: frozenset({_R.QUEUED}),
    _R.FAILED: frozenset({_R.QUEUED}),
    _R.CANCELLED: frozenset({_R.QUEUED}),
}


class TransitionError(ValueError):
    """A state change the state machine does not allow: always a bug, never user input."""


def check_task_transition(old: TaskState, new: TaskState) -> None:
    """Raise `TransitionError` unless a task instance may move from `old` to `new`."""
    if new not in TASK_TRANSITIONS[old]:
        raise TransitionError(f"task instance cannot move from {old} to {new}")


def check_run_transition(old: RunState, new: RunState) -> None:
    """Raise `TransitionError` unless a run may move from `old` to `new`."""
    if new not in RUN_TRANSITIONS[old]:
        raise TransitionError(f"run cannot move from {old} to {new}")
