"""Airflow's standard sensors, on the native waits where one fits.

`FileSensor` and the time sensors (`TimeDeltaSensor`, `DateTimeSensor`, `TimeSensor` and their
`Async` twins) check once in a worker, then wait on the native trigger (OS file events, the
engine's clock) without a slot, whatever their `mode=` / `deferrable=`; `timeout` then fails
the task, or skips it with `soft_fail`. The others (`PythonSensor`, `BashSensor`,
`DayOfWeekSensor`, a custom `poke`) poke in a worker every `poke_interval`: holding the slot in
`mode="poke"`, giving it back between pokes in `mode="reschedule"` (each poke is then a short
try, resumed by a time trigger).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import time
from collections.abc import Callable, Sequence
from contextvars import ContextVar
from glob import glob, has_magic
from typing import Any

from orchestrator.airflow_compat.baseoperator import BaseOperator
from orchestrator.airflow_compat.exceptions import (
    AirflowException,
    AirflowSensorTimeout,
    AirflowSkipException,
)
from orchestrator.airflow_compat.operators import call_with_context, run_bash
from orchestrator.airflow_compat.xcom import stored_value
from orchestrator.authoring.context import TaskContext
from orchestrator.authoring.defer import Defer
from triggers.base import Trigger
from triggers.external import ExternalRunTrigger
from triggers.file import FileTrigger
from triggers.time import TimeTrigger

#: The resolved inputs and first poke time of the sensor try running in this context.
_SENSING: ContextVar[tuple[dict[str, Any], float]] = ContextVar("airflow_sensing")


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

    def native_trigger(self, context: Any) -> Trigger | None:
        """The native trigger this sensor waits on without a slot; None: it pokes."""
        return None

    # -- running: a first check in a worker, then a deferral or pokes ---------------------------

    def run(self, inputs: dict[str, Any], context: TaskContext) -> Any:
        return self._poke_again(context, None, inputs=inputs, started_at=time.time())

    def _poke_again(
        self, context: TaskContext, event: Any, *, inputs: dict[str, Any], started_at: float
    ) -> Any:
        """A try of the sensor (the first, or one resumed after a rescheduled wait)."""
        token = _SENSING.set((inputs, started_at))
        try:
            return super().run(inputs, context)
        finally:
            _SENSING.reset(token)

    def _sensed(self, context: TaskContext, event: Any) -> Any:
        """The native trigger fired: the sensor succeeds, with no XCom (as in Airflow)."""
        return stored_value(None, {})

    def stored_result(self, returned: Any, context: dict[str, Any]) -> Any:
        return returned if isinstance(returned, Defer) else super().stored_result(returned, context)

    def execute(self, context: Any) -> Any:
        trigger = self.native_trigger(context)
        if trigger is None:
            return self._keep_poking(context, *_SENSING.get())
        return Defer(
            trigger,
            resume="_sensed",
            timeout=self.timeout,
            on_timeout="skip" if self.soft_fail else "fail",
        )

    def _keep_poking(self, context: Any, inputs: dict[str, Any], started_at: float) -> Any:
        while True:
            result = self.poke(context)
            if result:
                return result.xcom_value if isinstance(result, PokeReturnValue) else None
            left = started_at + self.timeout - time.time()
            if left <= 0:
                message = f"Sensor has timed out; run duration of {self.timeout} s"
                if self.soft_fail:
                    raise AirflowSkipException(message)
                raise AirflowSensorTimeout(message)
            if self.mode == "reschedule":
                moment = time.time() + min(self.poke_interval, left)
                kwargs = {"inputs": inputs, "started_at": started_at}
                return Defer(TimeTrigger(moment=moment), resume="_poke_again", kwargs=kwargs)
            time.sleep(min(self.poke_interval, left))


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

    def native_trigger(self, context: Any) -> Trigger | None:
        """OS events on the file's folder, once that folder exists and is not a pattern."""
        directory, name = os.path.split(os.path.abspath(self.filepath))
        if has_magic(directory) or not name or not os.path.isdir(directory):
            return None
        return FileTrigger(directory=directory, pattern=name, poll_interval=self.poke_interval)


class TimeDeltaSensor(BaseSensorOperator):
    def __init__(self, *, delta: dt.timedelta, **kwargs: Any) -> None:
        self.delta = delta
        super().__init__(**kwargs)

    def native_trigger(self, context: Any) -> Trigger | None:
        return TimeTrigger(moment=(context["data_interval_end"] + self.delta).timestamp())


class DateTimeSensor(BaseSensorOperator):
    template_fields: Sequence[str] = ("target_time",)

    def __init__(self, *, target_time: str | dt.datetime, **kwargs: Any) -> None:
        self.target_time = target_time
        super().__init__(**kwargs)

    def native_trigger(self, context: Any) -> Trigger | None:
        target = self.target_time
        if isinstance(target, str):
            target = dt.datetime.fromisoformat(target)
        if target.tzinfo is None:
            target = target.replace(tzinfo=dt.UTC)
        return TimeTrigger(moment=target.timestamp())


class TimeSensor(BaseSensorOperator):
    def __init__(self, *, target_time: dt.time, **kwargs: Any) -> None:
        self.target_time = target_time
        super().__init__(**kwargs)

    def native_trigger(self, context: Any) -> Trigger | None:
        """Today's `target_time` (UTC unless the time says its zone), as Airflow counts it."""
        zone = self.target_time.tzinfo or dt.UTC
        today = dt.datetime.now(zone).date()
        return TimeTrigger(moment=dt.datetime.combine(today, self.target_time, zone).timestamp())


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
    """Wait, without a slot, for a task (or the whole run) of another DAG: the run with this
    run's logical date (less `execution_delta`) for a scheduled run, else its newest run."""

    def __init__(
        self,
        *,
        external_dag_id: str,
        external_task_id: str | None = None,
        external_task_ids: Sequence[str] | None = None,
        allowed_states: Sequence[str] | None = None,
        failed_states: Sequence[str] | None = None,
        execution_delta: dt.timedelta | None = None,
        poll_interval: float = 2.0,
        **kwargs: Any,
    ) -> None:
        for name in ("external_task_group_id", "execution_date_fn", "skipped_states"):
            if kwargs.pop(name, None) is not None:
                raise AirflowException(f"ExternalTaskSensor({name}=...) is not supported")
        kwargs.pop("check_existence", None)
        ids = list(external_task_ids or ([external_task_id] if external_task_id else []))
        if len(ids) > 1:
            raise AirflowException("ExternalTaskSensor waits for one task here, not several")
        self.external_dag_id = external_dag_id
        self.external_task_id = ids[0] if ids else None
        self.allowed_states = tuple(allowed_states or ("success",))
        self.failed_states = tuple(failed_states or ())
        self.execution_delta = execution_delta or dt.timedelta(0)
        self.poll_interval = poll_interval
        super().__init__(**kwargs)

    def native_trigger(self, context: Any) -> Trigger | None:
        logical_date = None
        if context["dag_run"].run_type == "scheduled":
            logical_date = (context["logical_date"] - self.execution_delta).timestamp()
        trigger = ExternalRunTrigger(
            dag_id=self.external_dag_id,
            logical_date=logical_date,
            task_id=self.external_task_id,
            states=self.allowed_states,
            check_interval=max(self.poll_interval, 1.0),
        )
        if self.failed_states:
            return dataclasses.replace(trigger, failed_states=self.failed_states)
        return trigger


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
