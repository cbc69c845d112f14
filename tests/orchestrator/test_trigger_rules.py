"""Trigger rules: a table of representative upstream mixes, then properties over every mix."""

from __future__ import annotations

import itertools

import pytest

from orchestrator.authoring.trigger_rules import TriggerRule, Verdict, evaluate
from orchestrator.state import FINISHED_TASK_STATES, TaskState

S = TaskState.SUCCESS
F = TaskState.FAILED
K = TaskState.SKIPPED
U = TaskState.UPSTREAM_FAILED
C = TaskState.CANCELLED
R = TaskState.RUNNING
N = TaskState.NONE
D = TaskState.DEFERRED
Y = TaskState.UP_FOR_RETRY

RUN, WAIT, SKIP, UPSTREAM_FAILED = Verdict.RUN, Verdict.WAIT, Verdict.SKIP, Verdict.UPSTREAM_FAILED

TABLE: list[tuple[TriggerRule, list[TaskState], Verdict]] = [
    # all_success: run only when every upstream succeeded; a failure decides at once.
    (TriggerRule.ALL_SUCCESS, [S, S], RUN),
    (TriggerRule.ALL_SUCCESS, [S, R], WAIT),
    (TriggerRule.ALL_SUCCESS, [S, Y], WAIT),  # a retry is still coming
    (TriggerRule.ALL_SUCCESS, [F, R], UPSTREAM_FAILED),  # early
    (TriggerRule.ALL_SUCCESS, [U, N], UPSTREAM_FAILED),  # early
    (TriggerRule.ALL_SUCCESS, [K, R], WAIT),  # the running one may still fail
    (TriggerRule.ALL_SUCCESS, [S, K], SKIP),
    (TriggerRule.ALL_SUCCESS, [F, K], UPSTREAM_FAILED),
    (TriggerRule.ALL_SUCCESS, [S, C], SKIP),
    # all_failed
    (TriggerRule.ALL_FAILED, [F, U], RUN),
    (TriggerRule.ALL_FAILED, [F, R], WAIT),
    (TriggerRule.ALL_FAILED, [S, R], SKIP),  # early
    (TriggerRule.ALL_FAILED, [K, D], SKIP),  # early
    (TriggerRule.ALL_FAILED, [F, S], SKIP),
    # all_done
    (TriggerRule.ALL_DONE, [S, F, K, U, C], RUN),
    (TriggerRule.ALL_DONE, [F, R], WAIT),
    (TriggerRule.ALL_DONE, [S, Y], WAIT),
    # one_success: runs as soon as one succeeds
    (TriggerRule.ONE_SUCCESS, [S, R], RUN),  # early
    (TriggerRule.ONE_SUCCESS, [F, R], WAIT),
    (TriggerRule.ONE_SUCCESS, [F, K], UPSTREAM_FAILED),
    (TriggerRule.ONE_SUCCESS, [U, U], UPSTREAM_FAILED),
    (TriggerRule.ONE_SUCCESS, [K, K], SKIP),
    # one_failed: runs as soon as one fails
    (TriggerRule.ONE_FAILED, [F, R], RUN),  # early
    (TriggerRule.ONE_FAILED, [U, N], RUN),  # early
    (TriggerRule.ONE_FAILED, [S, R], WAIT),
    (TriggerRule.ONE_FAILED, [S, K], SKIP),
    # none_failed
    (TriggerRule.NONE_FAILED, [S, K], RUN),
    (TriggerRule.NONE_FAILED, [K, K], RUN),
    (TriggerRule.NONE_FAILED, [F, R], UPSTREAM_FAILED),  # early
    (TriggerRule.NONE_FAILED, [S, R], WAIT),
    (TriggerRule.NONE_FAILED, [U, S], UPSTREAM_FAILED),
    # none_skipped
    (TriggerRule.NONE_SKIPPED, [S, F], RUN),
    (TriggerRule.NONE_SKIPPED, [K, R], SKIP),  # early
    (TriggerRule.NONE_SKIPPED, [S, R], WAIT),
    (TriggerRule.NONE_SKIPPED, [S, K], SKIP),
    # always
    (TriggerRule.ALWAYS, [R, N], RUN),
    (TriggerRule.ALWAYS, [F, U], RUN),
    # one_done: runs as soon as one succeeds or fails
    (TriggerRule.ONE_DONE, [F, R], RUN),  # early
    (TriggerRule.ONE_DONE, [S, N], RUN),  # early
    (TriggerRule.ONE_DONE, [K, R], WAIT),
    (TriggerRule.ONE_DONE, [K, K], SKIP),
    # none_failed_min_one_success: the join after a branch
    (TriggerRule.NONE_FAILED_MIN_ONE_SUCCESS, [S, K], RUN),
    (TriggerRule.NONE_FAILED_MIN_ONE_SUCCESS, [K, K], SKIP),
    (TriggerRule.NONE_FAILED_MIN_ONE_SUCCESS, [F, R], UPSTREAM_FAILED),  # early
    (TriggerRule.NONE_FAILED_MIN_ONE_SUCCESS, [S, R], WAIT),
    # all_skipped
    (TriggerRule.ALL_SKIPPED, [K, K], RUN),
    (TriggerRule.ALL_SKIPPED, [S, R], SKIP),  # early
    (TriggerRule.ALL_SKIPPED, [K, R], WAIT),
    # all_done_setup_success without setups upstream: all_done
    (TriggerRule.ALL_DONE_SETUP_SUCCESS, [S, F, K, U, C], RUN),
    (TriggerRule.ALL_DONE_SETUP_SUCCESS, [F, R], WAIT),
]

#: all_done_setup_success (a teardown's rule): the upstream states, those of the setups among
#: them, and Airflow's verdict.
SETUP_TABLE: list[tuple[list[TaskState], list[TaskState], Verdict]] = [
    ([S, F], [S], RUN),  # the work failed: its setup's resource is torn down all the same
    ([S, S, F], [S, F], RUN),  # one of two setups succeeded
    ([S, R], [S], WAIT),  # the work is still going
    ([F, U], [F], UPSTREAM_FAILED),  # nothing was set up to tear down
    ([F, K, U], [F, K], UPSTREAM_FAILED),
    ([K, K], [K], SKIP),  # the setup was skipped: so is its teardown
    ([K, K, K], [K, K], SKIP),
]


@pytest.mark.parametrize(
    ("rule", "upstream", "expected"),
    TABLE,
    ids=[f"{rule}-{'+'.join(state for state in states)}" for rule, states, _ in TABLE],
)
def test_rule_table(rule: TriggerRule, upstream: list[TaskState], expected: Verdict) -> None:
    assert evaluate(rule, upstream) is expected


@pytest.mark.parametrize(("upstream", "setups", "expected"), SETUP_TABLE)
def test_a_teardown_runs_once_everything_is_done_if_a_setup_succeeded(
    upstream: list[TaskState], setups: list[TaskState], expected: Verdict
) -> None:
    assert evaluate(TriggerRule.ALL_DONE_SETUP_SUCCESS, upstream, setups) is expected


def test_the_table_covers_every_rule() -> None:
    assert {rule for rule, _, _ in TABLE} == set(TriggerRule)


@pytest.mark.parametrize("rule", list(TriggerRule))
def test_a_task_without_upstream_tasks_runs(rule: TriggerRule) -> None:
    """Whatever its rule, and however the (empty) states come: the fast path counts nothing."""
    assert evaluate(rule, []) is RUN
    assert evaluate(rule, ()) is RUN
    assert evaluate(rule, iter([])) is RUN
    assert evaluate(rule, [], [F]) is RUN  # setups are read only among upstream tasks


def test_always_runs_whatever_its_upstream_tasks_did() -> None:
    for size in (1, 2, 3):
        for mix in _mixes(size):
            assert evaluate(TriggerRule.ALWAYS, mix) is RUN, mix


def test_evaluate_accepts_any_iterable() -> None:
    assert evaluate(TriggerRule.ALL_SUCCESS, (state for state in [S, S])) is RUN


@pytest.mark.parametrize(
    ("upstream", "expected"),
    [([S], RUN), ((S, S, S), RUN), ([S, S, F], UPSTREAM_FAILED), ([S, S, R], WAIT), ([K, S], SKIP)],
)
def test_all_success_settles_the_same_whatever_the_order_of_its_upstream_states(
    upstream: list[TaskState] | tuple[TaskState, ...], expected: Verdict
) -> None:
    for order in itertools.permutations(upstream):
        assert evaluate(TriggerRule.ALL_SUCCESS, list(order)) is expected
        assert evaluate(TriggerRule.ALL_SUCCESS, iter(order)) is expected


def _mixes(size: int) -> list[tuple[TaskState, ...]]:
    return list(itertools.combinations_with_replacement(list(TaskState), size))


def _completions(upstream: tuple[TaskState, ...]) -> list[list[TaskState]]:
    """Every way the unfinished upstream tasks could still end."""
    done = [state for state in upstream if state.finished]
    open_count = len(upstream) - len(done)
    ends = sorted(FINISHED_TASK_STATES)
    return [done + list(end) for end in itertools.product(ends, repeat=open_count)]


@pytest.mark.parametrize("rule", list(TriggerRule))
def test_finished_upstream_tasks_always_decide(rule: TriggerRule) -> None:
    for size in (1, 2, 3):
        for mix in itertools.combinations_with_replacement(sorted(FINISHED_TASK_STATES), size):
            assert evaluate(rule, mix) is not WAIT, mix


@pytest.mark.parametrize("rule", list(TriggerRule))
def test_an_early_decision_never_contradicts_the_final_one(rule: TriggerRule) -> None:
    """Whatever the unfinished upstreams do next, the task's outcome is the one decided early."""
    for size in (1, 2, 3):
        for mix in _mixes(size):
            verdict = evaluate(rule, mix)
            if verdict is WAIT or all(state.finished for state in mix):
                continue
            finals = {evaluate(rule, completion) for completion in _completions(mix)}
            assert finals == {verdict}, (mix, verdict, finals)


@pytest.mark.parametrize("rule", list(TriggerRule))
def test_a_certain_skip_or_failure_is_decided_early(rule: TriggerRule) -> None:
    """No waiting for the slowest upstream once the task can only be skipped or failed."""
    for size in (1, 2, 3):
        for mix in _mixes(size):
            finals = {evaluate(rule, completion) for completion in _completions(mix)}
            if len(finals) == 1 and finals <= {SKIP, UPSTREAM_FAILED}:
                assert evaluate(rule, mix) in finals, (mix, finals)
