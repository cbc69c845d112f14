"""Airflow's `TriggerDagRunOperator`, on the native in-task `trigger_run`.

The run of the other DAG is created by the engine that runs this task (the daemon's, or
`orchestrator run`'s) when the try ends. `wait_for_completion` then waits without a slot on the
native `ExternalRunTrigger` (the engine's change feed), checking the store every
`poke_interval` too, instead of poking in a worker as Airflow does.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from orchestrator.airflow_compat.baseoperator import BaseOperator
from orchestrator.airflow_compat.exceptions import AirflowException
from orchestrator.airflow_compat.xcom import stored_value
from orchestrator.authoring.context import TaskContext, trigger_run
from orchestrator.authoring.defer import Defer
from triggers.external import ExternalRunTrigger

#: The XCom key Airflow pushes the new run's id under.
TRIGGER_RUN_ID_KEY = "trigger_run_id"


class TriggerDagRunOperator(BaseOperator):
    """Start a run of `trigger_dag_id` with `conf` (templated); optionally wait for its end."""

    template_fields: Sequence[str] = ("trigger_dag_id", "conf")
    ui_color = "#ffefeb"

    def __init__(
        self,
        *,
        trigger_dag_id: str,
        conf: dict[str, Any] | None = None,
        wait_for_completion: bool = False,
        poke_interval: float | dt.timedelta = 60,
        allowed_states: Sequence[str] | None = None,
        failed_states: Sequence[str] | None = None,
        reset_dag_run: bool = False,
        **kwargs: Any,
    ) -> None:
        _refuse_unsupported(reset_dag_run, kwargs)
        kwargs.pop("deferrable", None)  # it never holds a slot while it waits, either way
        kwargs.pop("skip_when_already_exists", None)  # a new run id each time: never exists
        super().__init__(**kwargs)
        self.trigger_dag_id = trigger_dag_id
        self.conf = conf
        self.wait_for_completion = wait_for_completion
        seconds = poke_interval
        self.poke_interval = (
            seconds.total_seconds() if isinstance(seconds, dt.timedelta) else seconds
        )
        self.allowed_states = tuple(allowed_states or ("success",))
        self.failed_states = tuple(failed_states or ("failed",))

    def execute(self, context: Any) -> Any:
        run_id = trigger_run(self.trigger_dag_id, self.conf)
        print(f"Triggered a run of {self.trigger_dag_id}: {run_id}")
        context["ti"].xcom_push(key=TRIGGER_RUN_ID_KEY, value=run_id)
        if not self.wait_for_completion:
            return None
        trigger = ExternalRunTrigger(
            dag_id=self.trigger_dag_id,
            run_id=run_id,
            states=self.allowed_states,
            failed_states=self.failed_states,
            check_interval=max(float(self.poke_interval), 1.0),
        )
        return Defer(trigger, resume="_run_ended", kwargs={"run_id": run_id})

    def _run_ended(self, context: TaskContext, event: Any, *, run_id: str) -> Any:
        """The triggered run reached one of `allowed_states` (a failed state fails the wait)."""
        return stored_value(None, {TRIGGER_RUN_ID_KEY: run_id})

    def stored_result(self, returned: Any, context: dict[str, Any]) -> Any:
        return returned if isinstance(returned, Defer) else super().stored_result(returned, context)


def _refuse_unsupported(reset_dag_run: bool, kwargs: dict[str, Any]) -> None:
    """Arguments whose Airflow meaning needs a run id or logical date chosen by the DAG file."""
    if reset_dag_run:
        raise AirflowException(
            "TriggerDagRunOperator(reset_dag_run=True) is not supported: each trigger starts a "
            "new run; clear the other DAG's run with `orchestrator runs clear` instead"
        )
    for name in ("trigger_run_id", "logical_date", "execution_date"):
        if kwargs.pop(name, None) is not None:
            raise AirflowException(
                f"TriggerDagRunOperator({name}=...) is not supported: the triggered run gets a "
                "new run id and no logical date (a manual run); pass what it needs in conf"
            )


__all__ = ("TriggerDagRunOperator",)
