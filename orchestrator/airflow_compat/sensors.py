"""Airflow's standard sensors, run in poke mode: `poke(context)` every `poke_interval` until
it is true, `timeout` passes (failing, or skipping with `soft_fail`), in the task's process.

`mode=` and `deferrable=` are accepted; the wait holds a worker slot (see the README: the
native sensors in `sensors/` wait without one).
"""

from __future__ import annotations

import datetime as dt
import os
import time
from collections.abc import Callable, Sequence
from glob import glob
from typing import Any

from orchestrator.airflow_compat.baseoperator import BaseOperator
from orchestrator.airflow_compat.exceptions import (
    AirflowException,
    AirflowSensorTimeout,
    AirflowSkipException,
)
from orchestrator.airflow_compat.operators import call_with_context, run_bash


class PokeReturnValue:
    def __init__(self, is_done: bool, xcom_value: Any = None) -> None:
        self.is_done, self.xcom_value = is_done, xcom_value

    def __bool__(self) -> bool:
        return self.is_done


class BaseSensorOperator(BaseOperator):
    ui_color = "#e6f1f2"

    def __init__(
        self,
        *,
        poke_interval: float | dt.timedelta = 60,
        timeout: float | dt.timedelta = 7 * 24 * 3600,
        soft_fail: bool = False,
        mode: str = "poke",
        exponential_backoff: bool = False,
        deferrable: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.poke_interval = _seconds(poke_interval)
        self.timeout = _seconds(timeout)
        self.soft_fail = soft_fail
        self.mode, self.deferrable = mode, deferrable

    def poke(self, context: Any) -> bool | PokeReturnValue:
        raise NotImplementedError(f"{type(self).__name__} must implement poke(context)")

    def execute(self, context: Any) -> Any:
        started = time.monotonic()
        while True:
            result = self.poke(context)
            if result:
                return result.xcom_value if isinstance(result, PokeReturnValue) else None
            if time.monotonic() - started >= self.timeout:
                message = f"Sensor has timed out; run duration of {self.timeout} s"
                if self.soft_fail:
                    raise AirflowSkipException(message)
                raise AirflowSensorTimeout(message)
            time.sleep(self.poke_interval)


def _seconds(value: float | dt.timedelta) -> float:
    return value.total_seconds() if isinstance(value, dt.timedelta) else float(value)


class PythonSensor(BaseSensorOperator):
    template_fields: Sequence[str] = ("templates_dict", "op_args", "op_kwargs")

    def __init__(
        self,
        *,
        python_callable: Callable[..., Any],
        op_args: Sequence[Any] | None = None,
        op_kwargs: dict[str, Any] | None = None,
        templates_dict: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        self.python_callable = python_callable
        self.op_args, self.op_kwargs = list(op_args or []), dict(op_kwargs or {})
        self.templates_dict = templates_dict
        super().__init__(**kwargs)

    def poke(self, context: Any) -> Any:
        context["templates_dict"] = self.templates_dict
        return call_with_context(self.python_callable, self.op_args, self.op_kwargs, context)


class BashSensor(BaseSensorOperator):
    template_fields: Sequence[str] = ("bash_command", "env")

    def __init__(self, *, bash_command: str, env: dict[str, str] | None = None, **kwargs: Any):
        self.bash_command, self.env = bash_command, env
        super().__init__(**kwargs)

    def poke(self, context: Any) -> bool:
        code, _ = run_bash(self.bash_command, self.env or dict(os.environ), None)
        return code == 0


class FileSensor(BaseSensorOperator):
    template_fields: Sequence[str] = ("filepath",)

    def __init__(self, *, filepath: str, fs_conn_id: str = "fs_default", **kwargs: Any):
        self.filepath = filepath
        self.recursive = kwargs.pop("recursive", False)
        super().__init__(**kwargs)

    def poke(self, context: Any) -> bool:
        return any(os.path.isfile(p) or os.path.isdir(p) for p in glob(self.filepath))


class TimeDeltaSensor(BaseSensorOperator):
    def __init__(self, *, delta: dt.timedelta, **kwargs: Any) -> None:
        self.delta = delta
        super().__init__(**kwargs)

    def poke(self, context: Any) -> bool:
        return bool(dt.datetime.now(dt.UTC) >= context["data_interval_end"] + self.delta)


class DateTimeSensor(BaseSensorOperator):
    template_fields: Sequence[str] = ("target_time",)

    def __init__(self, *, target_time: str | dt.datetime, **kwargs: Any) -> None:
        self.target_time = target_time
        super().__init__(**kwargs)

    def poke(self, context: Any) -> bool:
        target = self.target_time
        if isinstance(target, str):
            target = dt.datetime.fromisoformat(target)
        if target.tzinfo is None:
            target = target.replace(tzinfo=dt.UTC)
        return dt.datetime.now(dt.UTC) >= target


class TimeSensor(BaseSensorOperator):
    def __init__(self, *, target_time: dt.time, **kwargs: Any) -> None:
        self.target_time = target_time
        super().__init__(**kwargs)

    def poke(self, context: Any) -> bool:
        return dt.datetime.now(dt.UTC).time() >= self.target_time


class DayOfWeekSensor(BaseSensorOperator):
    def __init__(self, *, week_day: Any, use_task_logical_date: bool = False, **kwargs: Any):
        days = [week_day] if isinstance(week_day, str) else list(week_day)
        self.week_day = {str(day).upper() for day in days}
        self.use_task_logical_date = use_task_logical_date
        super().__init__(**kwargs)

    def poke(self, context: Any) -> bool:
        moment = context["logical_date"] if self.use_task_logical_date else dt.datetime.now()
        return moment.strftime("%A").upper() in self.week_day


class ExternalTaskSensor(BaseSensorOperator):
    def __init__(self, **kwargs: Any) -> None:
        raise AirflowException(
            "ExternalTaskSensor is not supported yet: schedule the DAG on the other DAG's "
            "finish (native DagFinished) or on an Asset it updates"
        )


TimeDeltaSensorAsync = TimeDeltaSensor
DateTimeSensorAsync = DateTimeSensor
TimeSensorAsync = TimeSensor

__all__ = (
    "BaseSensorOperator",
    "BashSensor",
    "DateTimeSensor",
    "DayOfWeekSensor",
    "ExternalTaskSensor",
    "FileSensor",
    "PokeReturnValue",
    "PythonSensor",
    "TimeDeltaSensor",
    "TimeSensor",
)
