"""`DateTimeSensor` and `TimeDeltaSensor`: wait until a moment, on the engine's clock.

```python
at_three = DateTimeSensor(task_id="at_three", target_time="2026-11-22T03:00:00+00:00")
cooled = TimeDeltaSensor(task_id="cooled", delta=timedelta(minutes=30))
```

A moment that passed while the engine was down fires as soon as it is back. The result is the
event: `{"moment", "moment_iso", "fired_at"}`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from orchestrator.authoring.retry import Duration, seconds
from sensors.base import BaseSensor, SensorArgs
from triggers.base import Trigger, current_runtime
from triggers.time import TimeTrigger, moment_of


class DateTimeSensor(BaseSensor):
    """Wait until `target_time`: a timezone-aware datetime, an ISO 8601 string, or epoch seconds."""

    def __init__(
        self, *, task_id: str, target_time: datetime | str | float | Any, **options: Any
    ) -> None:
        super().__init__(task_id=task_id, fields={"target_time": target_time}, **options)
        self.check_arguments()

    def make_trigger(self, args: SensorArgs) -> Trigger:
        return TimeTrigger(moment=moment_of(args["target_time"]))


class TimeDeltaSensor(BaseSensor):
    """Wait `delta` after the run's data interval ends (scheduled runs), or after it starts.

    A scheduled run's data is complete at its interval's end, so that is where Airflow counts
    from; a run with only a logical date counts from it, a manual run from the first check.
    """

    def __init__(self, *, task_id: str, delta: Duration, **options: Any) -> None:
        super().__init__(task_id=task_id, **options)
        wait = seconds(delta)
        if wait is None:
            raise ValueError(f"sensor {task_id!r}: delta must be a duration, got {delta!r}")
        self.delta = wait

    def make_trigger(self, args: SensorArgs) -> Trigger:
        context = args.context
        start = context.data_interval_end or context.logical_date
        if start is None:  # from the first check: a rescheduled check must not move the goal
            start = args.started_at or current_runtime().clock.now()
        return TimeTrigger(moment=start + self.delta)
