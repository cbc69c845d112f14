"""`ExternalTaskSensor`: wait until a run of another DAG (or one of its tasks) reaches a state.

```python
upstream_done = ExternalTaskSensor(task_id="features_ready", external_dag_id="features",
                                   external_task_id="publish")
```

Which run: `external_run_id` if given; else the run of the other DAG with this run's logical
date (scheduled runs, as in Airflow); else the newest run of the other DAG. It waits on the
engine's change feed, so it reacts at once; a failed state fails the sensor.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from sensors.base import BaseSensor, SensorArgs
from triggers.base import Trigger
from triggers.external import ExternalRunTrigger


class ExternalTaskSensor(BaseSensor):
    """Wait for another DAG's run (or task) to reach one of `allowed_states`."""

    def __init__(
        self,
        *,
        task_id: str,
        external_dag_id: str,
        external_task_id: str | None = None,
        external_run_id: Any = None,
        allowed_states: Sequence[str] = ("success",),
        failed_states: Sequence[str] | None = None,
        check_interval: float = 60.0,
        **options: Any,
    ) -> None:
        fields = {"external_run_id": external_run_id}
        super().__init__(task_id=task_id, fields=fields, **options)
        self.external_dag_id = external_dag_id
        self.external_task_id = external_task_id
        self.allowed_states = tuple(allowed_states)
        self.failed_states = None if failed_states is None else tuple(failed_states)
        self.check_interval = check_interval
        self.check_arguments()

    def make_trigger(self, args: SensorArgs) -> Trigger:
        run_id = args["external_run_id"]
        trigger = ExternalRunTrigger(
            dag_id=self.external_dag_id,
            run_id=run_id,
            logical_date=None if run_id else args.context.logical_date,
            task_id=self.external_task_id,
            states=self.allowed_states,
            check_interval=self.check_interval,
        )
        if self.failed_states is None:
            return trigger
        return dataclasses.replace(trigger, failed_states=self.failed_states)
