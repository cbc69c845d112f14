"""Sensors: tasks whose job is to wait, each for the event of one trigger.

```python
with DAG("retrain"):
    landed = FileSensor(task_id="landed", directory="data/incoming", pattern="*.csv")
    train(landed.output)   # the event: {"path": ..., "size": ..., ...}
```

Three modes, as in Airflow:

- `deferrable` (the default): the sensor defers from its first moment. It never takes a slot:
  the engine stores its trigger and hosts it in the event loop; the event completes the task,
  with the event's payload as its result.
- `reschedule`: a short check on a slot every `poke_interval`, the slot released in between
  (between checks it is deferred to a time trigger). For sources you would rather poll.
- `poke`: checks in a loop, holding its slot. Only for checks that cannot be async (a custom
  synchronous `poke`).

`timeout` bounds the whole wait (every mode); `soft_fail` skips the task instead of failing it
when the wait times out. `exponential_backoff` doubles the interval after each check, up to
`max_poke_interval`.

Sensor arguments may be the parameters of a `@dag` function or upstream outputs. A value set
by a run's `conf`, or taken from an upstream result (an event, a payload), is untrusted: the
triggers check it against the input policy. Values written in the DAG file, including a
parameter's default, are trusted.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from orchestrator.authoring.context import TaskContext
from orchestrator.authoring.defer import Defer
from orchestrator.authoring.operators import BaseOperator
from orchestrator.authoring.references import PLAIN_LEAVES, Output, ParamRef, iter_refs
from orchestrator.authoring.retry import Duration, seconds
from orchestrator.authoring.tasks import Skip
from orchestrator.errors import DagError, OrchestratorError, TaskError
from triggers.base import Trigger, current_runtime
from triggers.time import TimeTrigger

Mode = Literal["deferrable", "reschedule", "poke"]
MODES = ("deferrable", "reschedule", "poke")
DEFAULT_TIMEOUT = 7 * 24 * 3600.0  # a week, as in Airflow
_NONE: frozenset[str] = frozenset()


class SensorTimeoutError(TaskError):
    """The sensor waited past its `timeout` (a soft-failing sensor is skipped instead)."""


@dataclass(frozen=True)
class SensorArgs:
    """A sensor's arguments as they are for this run: references resolved, and which were."""

    values: Mapping[str, Any]
    untrusted: frozenset[str]  # names whose value came from conf, params or an upstream task
    context: TaskContext
    started_at: float | None = None  # when the sensor began waiting (its first check)

    def __getitem__(self, name: str) -> Any:
        return self.values[name]

    def trusted(self, *names: str) -> bool:
        """True unless one of `names` came from run-time input."""
        return not self.untrusted.intersection(names)


class BaseSensor(BaseOperator):
    """Subclass, pass your arguments as `fields`, and implement `make_trigger(args)`."""

    def __init__(
        self,
        *,
        task_id: str,
        fields: Mapping[str, Any] | None = None,
        mode: Mode = "deferrable",
        timeout: Duration = DEFAULT_TIMEOUT,
        poke_interval: Duration = 60.0,
        exponential_backoff: bool = False,
        max_poke_interval: Duration | None = None,
        soft_fail: bool = False,
        **options: Any,
    ) -> None:
        super().__init__(task_id=task_id, **options)
        if mode not in MODES:
            raise ValueError(f"sensor {task_id!r}: mode must be one of {', '.join(MODES)}")
        self.mode = mode
        self.timeout = _positive(task_id, "timeout", timeout)
        self.poke_interval = _positive(task_id, "poke_interval", poke_interval)
        if max_poke_interval is None:
            max_poke_interval = max(self.poke_interval, 3600.0)
        self.max_poke_interval = _positive(task_id, "max_poke_interval", max_poke_interval)
        self.exponential_backoff = exponential_backoff
        self.soft_fail = soft_fail
        self.fields = dict(fields or {})
        self.link_input_refs()

    def make_trigger(self, args: SensorArgs) -> Trigger:
        """The trigger this sensor waits on, for this run's arguments."""
        raise NotImplementedError(f"{type(self).__name__} must implement make_trigger(args)")

    def check_arguments(self) -> None:
        """Build the trigger once now, so bad arguments fail the DAG file, at their line.

        Subclasses call this at the end of `__init__`. Arguments that come from params or
        upstream tasks are only known per run: then the check waits for the run.
        """
        if any(iter_refs(self.fields)):
            return
        context = TaskContext(dag_id=self.dag.dag_id, run_id="", task_id=self.task_id)
        try:
            self.make_trigger(SensorArgs(self.fields, frozenset(), context))
        except (ValueError, TypeError, OrchestratorError) as error:
            raise DagError(
                f"sensor {self.task_id!r}: {error}", file=self.site.file, line=self.site.line
            ) from None

    @property
    def output(self) -> Output:
        """This sensor's result (the event's payload), for downstream tasks."""
        return Output(self)

    # -- how the engine sees it -------------------------------------------------------------------

    @property
    def inputs(self) -> dict[str, Any]:
        return {"kwargs": self.fields}

    @property
    def defers_at_start(self) -> bool:
        return self.mode == "deferrable"

    @property
    def is_async(self) -> bool:
        return not self._pokes_synchronously()

    def first_deferral(self, inputs: dict[str, Any], context: TaskContext) -> Defer:
        trigger = self.make_trigger(self._args(inputs, context))
        return Defer(trigger, timeout=self.timeout, on_timeout="skip" if self.soft_fail else "fail")

    def run(self, inputs: dict[str, Any], context: TaskContext) -> Any:
        """A check on a slot (reschedule and poke modes; deferrable mode never gets here)."""
        if self.mode == "deferrable":  # not normally reached: the engine defers it at start
            return self.first_deferral(inputs, context)
        if self._pokes_synchronously():
            return self._check_sync(context, None, inputs=inputs, started_at=None, checks=0)
        return self._check_async(context, None, inputs=inputs, started_at=None, checks=0)

    # -- checking on a slot -----------------------------------------------------------------------

    def poke(self, context: TaskContext) -> Any:
        """Override with a *synchronous* check for sources that cannot be awaited.

        Return something falsy while the condition does not hold; `True` (result None) or a
        JSON-safe value (the result) when it does.
        """
        raise NotImplementedError  # the default: the trigger's own `poll()`, in the loop

    def _pokes_synchronously(self) -> bool:
        return type(self).poke is not BaseSensor.poke

    async def _check_async(
        self,
        context: TaskContext,
        event: Any,
        *,
        inputs: Any,
        started_at: float | None,
        checks: int,
    ) -> Any:
        clock = current_runtime().clock
        started_at = clock.now() if started_at is None else started_at
        trigger = self.make_trigger(self._args(inputs, context, started_at))
        while True:
            found = await trigger.poll()
            if found is not None:
                return found.payload
            delay = self._next_delay(clock.now(), started_at, checks)
            checks += 1
            if self.mode == "reschedule":
                return self._reschedule(
                    clock.now() + delay, "_check_async", inputs, started_at, checks
                )
            await clock.sleep_until(clock.now() + delay)

    def _check_sync(
        self,
        context: TaskContext,
        event: Any,
        *,
        inputs: Any,
        started_at: float | None,
        checks: int,
    ) -> Any:
        started_at = time.time() if started_at is None else started_at
        while True:
            found = self.poke(context)
            if found:
                return None if found is True else found
            delay = self._next_delay(time.time(), started_at, checks)
            checks += 1
            if self.mode == "reschedule":
                return self._reschedule(
                    time.time() + delay, "_check_sync", inputs, started_at, checks
                )
            time.sleep(delay)  # poke mode holds its slot in a worker process, by design

    def _next_delay(self, now: float, started_at: float, checks: int) -> float:
        """The wait before the next check; raises when the sensor's time is up."""
        left = started_at + self.timeout - now
        if left <= 0:
            message = f"the sensor waited {self.timeout:g}s without its condition holding"
            if self.soft_fail:
                raise Skip(message)
            raise SensorTimeoutError(message)
        factor = 2.0**checks if self.exponential_backoff else 1.0
        return min(self.poke_interval * factor, self.max_poke_interval, left)

    def _reschedule(
        self, moment: float, method: str, inputs: Any, started_at: float, checks: int
    ) -> Defer:
        kwargs = {"inputs": inputs, "started_at": started_at, "checks": checks}
        return Defer(TimeTrigger(moment=moment), resume=method, kwargs=kwargs)

    # -- arguments --------------------------------------------------------------------------------

    def _args(
        self, inputs: dict[str, Any], context: TaskContext, started_at: float | None = None
    ) -> SensorArgs:
        values = inputs.get("kwargs", {})
        return SensorArgs(values, self._untrusted(context.conf), context, started_at)

    def _untrusted(self, conf: Mapping[str, Any]) -> frozenset[str]:
        """Arguments set by this run's `conf`, or taken from an upstream task's result.

        A param left at the default written in the DAG file is as trusted as the file.
        """
        if PLAIN_LEAVES.issuperset(map(type, self.fields.values())):
            return _NONE  # as most sensors' fields are: checked in C, no generator to run
        return frozenset(
            name
            for name, value in self.fields.items()
            if type(value) not in PLAIN_LEAVES  # no walk (a generator each) for a plain value
            for ref in iter_refs(value)
            if not isinstance(ref, ParamRef) or ref.name in conf
        )


def _positive(task_id: str, name: str, value: Duration) -> float:
    number = seconds(value)
    if number is None or not number > 0:
        raise ValueError(f"sensor {task_id!r}: {name} must be a positive duration, got {value!r}")
    return number
