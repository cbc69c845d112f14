"""Trigger rules: when a task may run, given the states of its direct upstream tasks."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from enum import StrEnum

from orchestrator.state import TaskState


class TriggerRule(StrEnum):
    """What the upstream tasks must have done before a task runs."""

    ALL_SUCCESS = "all_success"  # every upstream succeeded (the default)
    ALL_FAILED = "all_failed"  # every upstream failed or had an upstream fail
    ALL_DONE = "all_done"  # every upstream finished, whatever the outcome
    ONE_SUCCESS = "one_success"  # at least one upstream succeeded (runs as soon as one does)
    ONE_FAILED = "one_failed"  # at least one upstream failed (runs as soon as one does)
    NONE_FAILED = "none_failed"  # no upstream failed: each succeeded or was skipped
    NONE_SKIPPED = "none_skipped"  # no upstream was skipped: each finished otherwise
    ALWAYS = "always"  # no condition at all
    ONE_DONE = "one_done"  # at least one upstream succeeded or failed (runs as soon as one has)
    # every upstream finished, none failed, at least one succeeded (after a branch, say)
    NONE_FAILED_MIN_ONE_SUCCESS = "none_failed_min_one_success"
    ALL_SKIPPED = "all_skipped"  # every upstream was skipped
    # every upstream finished, and one of the setups among them succeeded (a teardown's rule)
    ALL_DONE_SETUP_SUCCESS = "all_done_setup_success"


class Verdict(StrEnum):
    """What a trigger rule says about a task now."""

    WAIT = "wait"  # not decidable yet
    RUN = "run"
    SKIP = "skip"
    UPSTREAM_FAILED = "upstream_failed"


_FAILED = (TaskState.FAILED, TaskState.UPSTREAM_FAILED)
_SEQUENCES = (list, tuple)  # made once: `list | tuple` in the call made a union each time
_SUCCESS = TaskState.SUCCESS  # compared with each upstream state: off the enum it is slower
_FAIL_ON_A_FAILURE = (
    TriggerRule.ALL_SUCCESS,
    TriggerRule.NONE_FAILED,
    TriggerRule.NONE_FAILED_MIN_ONE_SUCCESS,
)


def evaluate(
    rule: TriggerRule, upstream: Iterable[TaskState], setups: Iterable[TaskState] = ()
) -> Verdict:
    """Decide from the upstream states whether a task runs, waits, is skipped or cannot run.

    Follows Airflow's semantics so migrating users are not surprised: under `all_success`
    a skipped upstream skips the task, and a failed one marks it `upstream_failed`. `setups`
    are the states of the upstream tasks that are setups (`Task.is_setup`), which only
    `all_done_setup_success` reads.
    """
    states = upstream if isinstance(upstream, _SEQUENCES) else list(upstream)
    if not states or rule is TriggerRule.ALWAYS:
        # A root task (every sensor of a fan-in): nothing to wait for, whatever its rule, and
        # no `Counter` to build (100,000 of them when arming as many sensors).
        return Verdict.RUN
    if rule is TriggerRule.ALL_SUCCESS and _all_succeeded(states):
        return Verdict.RUN  # the default rule's usual answer, without counting every state
    counts = Counter(states)
    total = sum(counts.values())
    done = sum(n for state, n in counts.items() if state.finished)
    failed = counts[TaskState.FAILED] + counts[TaskState.UPSTREAM_FAILED]
    skipped = counts[TaskState.SKIPPED]
    success = counts[TaskState.SUCCESS]
    if rule is TriggerRule.ONE_SUCCESS:
        return _one(success, done, total, on_none=_none_verdict(failed))
    if rule is TriggerRule.ONE_FAILED:
        return _one(failed, done, total, on_none=Verdict.SKIP)
    if rule is TriggerRule.ONE_DONE:
        return _one(success + failed, done, total, on_none=Verdict.SKIP)
    if rule is TriggerRule.ALL_DONE_SETUP_SUCCESS:
        return Verdict.WAIT if done < total else _setup_verdict(Counter(setups))
    if done < total:
        return _early_verdict(rule, failed=failed, skipped=skipped, done=done)
    return _final_verdict(rule, failed=failed, skipped=skipped, success=success, total=total)


def _all_succeeded(states: list[TaskState] | tuple[TaskState, ...]) -> bool:
    """Every state is `success` (the scan stops at the first other).

    Most tasks are `all_success` and settle once every upstream succeeded: building a `Counter`
    for that was a tenth of the scheduler's CPU per task in a chain.
    """
    return all(state is _SUCCESS for state in states)


def _none_verdict(failed: int) -> Verdict:
    return Verdict.UPSTREAM_FAILED if failed else Verdict.SKIP


def _one(hits: int, done: int, total: int, *, on_none: Verdict) -> Verdict:
    if hits:
        return Verdict.RUN
    return on_none if done == total else Verdict.WAIT


def _setup_verdict(setups: Counter[TaskState]) -> Verdict:
    """A teardown tears down what one of its setups made: with none made, there is nothing.

    As in Airflow, setups that were all skipped skip it, and setups of which none succeeded
    otherwise (one failed) make it `upstream_failed`; a task without setups runs.
    """
    total = sum(setups.values())
    if not total or setups[TaskState.SUCCESS]:
        return Verdict.RUN
    return Verdict.SKIP if setups[TaskState.SKIPPED] == total else Verdict.UPSTREAM_FAILED


def _early_verdict(rule: TriggerRule, *, failed: int, skipped: int, done: int) -> Verdict:
    """Some upstreams are unfinished: decide now if every way they can finish agrees.

    Deciding early sends a skip or a failure through the rest of the graph at once instead of
    after the slowest upstream, and never changes the outcome. That is why `all_success` does
    not skip early on a skipped upstream (unlike Airflow): another upstream may still fail,
    which makes the task `upstream_failed`, so the answer would depend on timing.
    """
    if rule in _FAIL_ON_A_FAILURE and failed:
        return Verdict.UPSTREAM_FAILED
    if rule is TriggerRule.ALL_SKIPPED and done > skipped:  # one finished without a skip
        return Verdict.SKIP
    if rule is TriggerRule.ALL_FAILED and done > failed:  # one finished without failing
        return Verdict.SKIP
    if rule is TriggerRule.NONE_SKIPPED and skipped:
        return Verdict.SKIP
    return Verdict.WAIT


def _final_verdict(
    rule: TriggerRule, *, failed: int, skipped: int, success: int, total: int
) -> Verdict:
    if rule is TriggerRule.ALL_SUCCESS:
        if failed:
            return Verdict.UPSTREAM_FAILED
        return Verdict.RUN if success == total else Verdict.SKIP
    if rule is TriggerRule.ALL_FAILED:
        return Verdict.RUN if failed == total else Verdict.SKIP
    if rule is TriggerRule.NONE_FAILED:
        return Verdict.UPSTREAM_FAILED if failed else Verdict.RUN
    if rule is TriggerRule.NONE_SKIPPED:
        return Verdict.SKIP if skipped else Verdict.RUN
    if rule is TriggerRule.NONE_FAILED_MIN_ONE_SUCCESS:
        return Verdict.UPSTREAM_FAILED if failed else Verdict.RUN if success else Verdict.SKIP
    if rule is TriggerRule.ALL_SKIPPED:
        return Verdict.RUN if skipped == total else Verdict.SKIP
    return Verdict.RUN  # ALL_DONE
