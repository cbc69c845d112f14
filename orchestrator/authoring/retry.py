"""Retry policy: how many tries a task gets and how long to wait between them."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import timedelta

Duration = float | int | timedelta


def seconds(value: Duration | None) -> float | None:
    """A duration given as seconds or `timedelta`, as float seconds; checks it is not negative."""
    if type(value) is float and value >= 0:
        return value  # the common case, taken at once: a sensor's timeout, made by the thousand
    if value is None:
        return None
    if not isinstance(value, int | float | timedelta) or isinstance(value, bool):
        raise TypeError(f"a duration must be a number of seconds or a timedelta, got {value!r}")
    result = value.total_seconds() if isinstance(value, timedelta) else float(value)
    if result < 0:
        raise ValueError(f"a duration cannot be negative, got {value!r}")
    return result


@dataclass(frozen=True, kw_only=True)
class RetryPolicy:
    """`retries` extra tries after the first; the delay doubles per try when `exponential`.

    With `jitter`, each delay is drawn uniformly from [delay/2, delay] so that many tasks
    failing together (a flaky database) do not all retry in the same instant.
    """

    retries: int = 0
    delay: float = 5.0
    exponential: bool = False
    max_delay: float | None = None
    jitter: bool = False

    def __post_init__(self) -> None:
        if self.retries < 0:
            raise ValueError(f"retries must be 0 or more, got {self.retries}")
        if self.delay < 0:
            raise ValueError(f"retry_delay cannot be negative, got {self.delay}")
        if self.max_delay is not None and self.max_delay < 0:
            raise ValueError(f"max_retry_delay cannot be negative, got {self.max_delay}")

    def delay_after(self, try_number: int, rng: random.Random | None = None) -> float:
        """Seconds to wait after try `try_number` (1-based) failed."""
        if try_number < 1:
            raise ValueError(f"try numbers start at 1, got {try_number}")
        # The exponent is capped so that a task with hundreds of retries does not overflow a
        # float; 2**64 times any delay is longer than any max_delay anyway.
        delay = self.delay * (2 ** min(try_number - 1, 64) if self.exponential else 1)
        if self.max_delay is not None:
            delay = min(delay, self.max_delay)
        if self.jitter:
            delay = (rng or random).uniform(delay / 2, delay)
        return delay
