"""The state machines: the one transition table the store enforces."""

from __future__ import annotations

import pytest

from orchestrator.state import (
    FINISHED_TASK_STATES,
    RUN_TRANSITIONS,
    TASK_TRANSITIONS,
    RunState,
    TaskState,
    TransitionError,
    check_run_transition,
    check_task_transition,
)


def test_every_state_has_a_row() -> None:
    assert set(TASK_TRANSITIONS) == set(TaskState)
    assert set(RUN_TRANSITIONS) == set(RunState)


@pytest.mark.parametrize("state", sorted(FINISHED_TASK_STATES))
def test_a_finished_task_state_leaves_only_by_a_clear(state: TaskState) -> None:
    assert state.finished
    assert TASK_TRANSITIONS[state] == frozenset({TaskState.NONE})
    for target in set(TaskState) - {TaskState.NONE}:
        with pytest.raises(TransitionError, match=f"from {state} to {target}"):
            check_task_transition(state, target)


@pytest.mark.parametrize("state", [state for state in RunState if state.finished])
def test_a_finished_run_state_leaves_only_by_a_clear(state: RunState) -> None:
    assert RUN_TRANSITIONS[state] == frozenset({RunState.QUEUED})
    for target in set(RunState) - {RunState.QUEUED}:
        with pytest.raises(TransitionError, match=f"run cannot move from {state} to {target}"):
            check_run_transition(state, target)


def test_unfinished_states_are_not_finished() -> None:
    unfinished = set(TaskState) - FINISHED_TASK_STATES
    assert unfinished == {
        TaskState.NONE,
        TaskState.SCHEDULED,
        TaskState.QUEUED,
        TaskState.RUNNING,
        TaskState.DEFERRED,
        TaskState.UP_FOR_RETRY,
    }
    assert not any(state.finished for state in unfinished)
    assert {state for state in RunState if not state.finished} == {
        RunState.QUEUED,
        RunState.RUNNING,
    }


def test_every_unfinished_task_state_can_be_left_and_cancelled() -> None:
    for state in set(TaskState) - FINISHED_TASK_STATES:
        assert TASK_TRANSITIONS[state], state
        check_task_transition(state, TaskState.CANCELLED)


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (TaskState.NONE, TaskState.SCHEDULED),
        (TaskState.SCHEDULED, TaskState.QUEUED),
        (TaskState.QUEUED, TaskState.RUNNING),
        (TaskState.RUNNING, TaskState.SUCCESS),
        (TaskState.RUNNING, TaskState.UP_FOR_RETRY),
        (TaskState.UP_FOR_RETRY, TaskState.SCHEDULED),
        (TaskState.RUNNING, TaskState.DEFERRED),
        (TaskState.DEFERRED, TaskState.SCHEDULED),  # resume on a slot
        (TaskState.SCHEDULED, TaskState.DEFERRED),  # a sensor defers at once...
        (TaskState.DEFERRED, TaskState.SUCCESS),  # ...and finishes without a slot
        (TaskState.NONE, TaskState.UPSTREAM_FAILED),
        (TaskState.NONE, TaskState.SKIPPED),
    ],
)
def test_the_documented_lifecycle_is_allowed(old: TaskState, new: TaskState) -> None:
    check_task_transition(old, new)


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (TaskState.NONE, TaskState.RUNNING),  # must be scheduled and queued first
        (TaskState.NONE, TaskState.SUCCESS),
        (TaskState.SCHEDULED, TaskState.SUCCESS),
        (TaskState.UP_FOR_RETRY, TaskState.RUNNING),  # waits for its backoff, then scheduled
        (TaskState.RUNNING, TaskState.RUNNING),
    ],
)
def test_shortcuts_are_refused(old: TaskState, new: TaskState) -> None:
    with pytest.raises(TransitionError, match=f"task instance cannot move from {old} to {new}"):
        check_task_transition(old, new)


def test_run_lifecycle() -> None:
    check_run_transition(RunState.QUEUED, RunState.RUNNING)
    check_run_transition(RunState.RUNNING, RunState.SUCCESS)
    check_run_transition(RunState.QUEUED, RunState.CANCELLED)
    with pytest.raises(TransitionError):
        check_run_transition(RunState.QUEUED, RunState.SUCCESS)


def test_states_are_their_stored_strings() -> None:
    assert TaskState("upstream_failed") is TaskState.UPSTREAM_FAILED
    assert str(RunState.RUNNING) == "running"
    assert issubclass(TransitionError, ValueError)
