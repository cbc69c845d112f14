"""Retry policy: delays between tries, and durations as seconds or timedelta."""

from __future__ import annotations

import math
import random
from datetime import timedelta

import pytest

from orchestrator.authoring.retry import RetryPolicy, seconds


def test_fixed_delay_is_the_same_for_every_try() -> None:
    policy = RetryPolicy(retries=3, delay=7.0)
    assert [policy.delay_after(n) for n in (1, 2, 3)] == [7.0, 7.0, 7.0]


def test_exponential_delay_doubles_per_try() -> None:
    policy = RetryPolicy(retries=4, delay=2.0, exponential=True)
    assert [policy.delay_after(n) for n in (1, 2, 3, 4)] == [2.0, 4.0, 8.0, 16.0]


def test_max_delay_caps_the_exponential_growth() -> None:
    policy = RetryPolicy(retries=10, delay=1.0, exponential=True, max_delay=5.0)
    assert [policy.delay_after(n) for n in (1, 2, 3, 4, 10)] == [1.0, 2.0, 4.0, 5.0, 5.0]


def test_a_huge_try_number_does_not_overflow() -> None:
    policy = RetryPolicy(retries=5000, delay=1.0, exponential=True, max_delay=60.0)
    assert policy.delay_after(4000) == 60.0


def test_max_delay_also_caps_a_fixed_delay() -> None:
    assert RetryPolicy(delay=30.0, max_delay=10.0).delay_after(1) == 10.0


def test_jitter_stays_between_half_and_the_whole_delay() -> None:
    policy = RetryPolicy(retries=5, delay=8.0, exponential=True, jitter=True)
    rng = random.Random(1234)
    for try_number in (1, 2, 3, 4, 5):
        full = 8.0 * 2 ** (try_number - 1)
        delays = [policy.delay_after(try_number, rng) for _ in range(200)]
        assert all(full / 2 <= delay <= full for delay in delays)
        assert len(set(delays)) > 1  # actually random, not a constant


def test_jitter_is_reproducible_with_a_seeded_random() -> None:
    policy = RetryPolicy(delay=10.0, jitter=True)
    first = [policy.delay_after(1, random.Random(7)) for _ in range(3)]
    assert first[0] == first[1] == first[2]
    assert first[0] != policy.delay_after(1, random.Random(8))


def test_zero_delay_retries_at_once() -> None:
    assert RetryPolicy(retries=1, delay=0.0, exponential=True).delay_after(3) == 0.0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"retries": -1}, "retries must be 0 or more"),
        ({"delay": -1.0}, "retry_delay cannot be negative"),
        ({"max_delay": -1.0}, "max_retry_delay cannot be negative"),
    ],
)
def test_bad_policies_are_refused(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]


def test_try_numbers_start_at_one() -> None:
    with pytest.raises(ValueError, match="try numbers start at 1, got 0"):
        RetryPolicy().delay_after(0)


def test_seconds_accepts_numbers_and_timedeltas() -> None:
    assert seconds(None) is None
    assert seconds(3) == 3.0
    assert seconds(2.5) == 2.5
    assert seconds(timedelta(minutes=2)) == 120.0


@pytest.mark.parametrize("value", [-1, timedelta(seconds=-5)])
def test_seconds_refuses_a_negative_duration(value: float | timedelta) -> None:
    with pytest.raises(ValueError, match="a duration cannot be negative"):
        seconds(value)


@pytest.mark.parametrize("value", ["5", True, [1]])
def test_seconds_refuses_what_is_not_a_duration(value: object) -> None:
    with pytest.raises(TypeError, match="a number of seconds or a timedelta"):
        seconds(value)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("value", "expected"),
    [(0.0, 0.0), (5.5, 5.5), (math.inf, math.inf), (3, 3.0), (timedelta(minutes=1), 60.0)],
)
def test_a_duration_in_seconds_whatever_its_form(value: object, expected: float) -> None:
    """A non-negative float is taken at once (a sensor's timeout); the rest as before."""
    assert seconds(value) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("value", "error"),
    [(-1.0, ValueError), (-2, ValueError), (True, TypeError), ("5", TypeError)],
)
def test_a_duration_that_is_not_one_is_refused(value: object, error: type[Exception]) -> None:
    with pytest.raises(error):
        seconds(value)  # type: ignore[arg-type]
