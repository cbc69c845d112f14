"""Sensors: tasks that wait, each deferring to a trigger (or poking, or rescheduling).

```python
from sensors import FileSensor, S3KeySensor, HttpSensor, DateTimeSensor, ExternalTaskSensor
```

Names are imported on first use, so a DAG file that uses one sensor loads only its trigger.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from orchestrator.lazy import lazy_exports

__all__ = (
    "BaseSensor",
    "DateTimeSensor",
    "ExternalTaskSensor",
    "FileSensor",
    "HttpSensor",
    "S3KeySensor",
    "SensorArgs",
    "SensorTimeoutError",
    "TimeDeltaSensor",
)

_WHERE = {
    "BaseSensor": "sensors.base",
    "SensorArgs": "sensors.base",
    "SensorTimeoutError": "sensors.base",
    "DateTimeSensor": "sensors.time",
    "TimeDeltaSensor": "sensors.time",
    "ExternalTaskSensor": "sensors.external",
    "FileSensor": "sensors.file",
    "HttpSensor": "sensors.http",
    "S3KeySensor": "sensors.s3",
}

if TYPE_CHECKING:
    from sensors.base import BaseSensor, SensorArgs, SensorTimeoutError
    from sensors.external import ExternalTaskSensor
    from sensors.file import FileSensor
    from sensors.http import HttpSensor
    from sensors.s3 import S3KeySensor
    from sensors.time import DateTimeSensor, TimeDeltaSensor


__getattr__, __dir__ = lazy_exports("sensors", globals(), _WHERE)
