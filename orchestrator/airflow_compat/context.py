"""The context an Airflow task gets: `ti`, `ds`, `logical_date`, `params`, `dag_run`, ...

Built in the task's process from the native `TaskContext` and the run's results so far. Tasks
receive it as `execute(context)`, by parameter name or `**kwargs` (PythonOperator, @task), or
from `get_current_context()`.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from orchestrator.airflow_compat import macros
from orchestrator.airflow_compat.asset_events import triggering_events
from orchestrator.airflow_compat.models import Param, ParamsDict, Variable
from orchestrator.airflow_compat.xcom import RETURN_VALUE, value_for_key
from orchestrator.authoring.context import TaskContext

if TYPE_CHECKING:
    from orchestrator.authoring.tasks import Task

Context = dict[str, Any]
_current: contextvars.ContextVar[Context] = contextvars.ContextVar("airflow_context")


class TaskInstance:
    """The running task instance: its identity, and XCom push and pull."""

    def __init__(self, task: Task, native: TaskContext, xcoms: Mapping[str, Any]) -> None:
        self.task = task
        self.task_id = native.task_id
        self.dag_id = native.dag_id
        self.run_id = native.run_id
        self.map_index = native.map_index
        self.try_number = native.try_number
        self.max_tries = native.max_tries - 1  # Airflow counts retries, not tries
        self.log_url = native.log_path
        self._xcoms = xcoms
        self.pushed: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any, **_: Any) -> None:
        self.pushed[key] = value

    def xcom_pull(
        self,
        task_ids: str | list[str] | None = None,
        key: str | None = RETURN_VALUE,
        include_prior_dates: bool = False,
        map_indexes: int | list[int] | None = None,
        default: Any = None,
        **_: Any,
    ) -> Any:
        """One value for one task id; a list for a list of ids; this task's own when None."""
        if task_ids is None:
            return value_for_key(self.pushed, key) if key in self.pushed else default
        if isinstance(task_ids, str):
            return self._pull_one(task_ids, key, default)
        return [self._pull_one(task_id, key, default) for task_id in task_ids]

    def _pull_one(self, task_id: str, key: str | None, default: Any) -> Any:
        if task_id not in self._xcoms:
            return default
        stored = self._xcoms[task_id]
        mapped = getattr(self.task.dag.tasks.get(task_id), "is_mapped", False)
        if mapped and isinstance(stored, list):
            return [value_for_key(item, key) for item in stored]
        value = value_for_key(stored, key)
        return default if value is None else value

    def __repr__(self) -> str:
        return f"<TaskInstance: {self.dag_id}.{self.task_id} {self.run_id}>"


class DagRun:
    """The run: its id, conf, logical date and data interval."""

    def __init__(self, native: TaskContext, logical: datetime, start: datetime, end: datetime):
        self.dag_id = native.dag_id
        self.run_id = native.run_id
        self.conf = dict(native.conf)
        self.logical_date = self.execution_date = logical
        self.data_interval_start, self.data_interval_end = start, end
        self.run_type = "scheduled" if native.logical_date is not None else "manual"
        self.external_trigger = native.logical_date is None


def run_dates(native: TaskContext, timetable: Any = None) -> tuple[datetime, datetime, datetime]:
    """The run's logical date and data interval (start, end).

    A manual run's logical date is the moment it was queued (its run id's stamp), and its
    interval is what the DAG's timetable says for it (Airflow's `infer_manual_data_interval`):
    a trigger timetable's `interval` before it, else empty at it.
    """
    if native.logical_date is not None:
        start = datetime.fromtimestamp(native.logical_date, UTC)
        end = native.data_interval_end
        return start, start, datetime.fromtimestamp(end, UTC) if end is not None else start
    try:
        moment = datetime.strptime(native.run_id[:16], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    except ValueError:
        moment = datetime.now(UTC)
    if timetable is None:
        return moment, moment, moment
    start_at, end_at = timetable.manual_interval(moment.timestamp())
    return moment, datetime.fromtimestamp(start_at, UTC), datetime.fromtimestamp(end_at, UTC)


def _pendulum(moment: datetime) -> Any:
    try:
        import pendulum
    except ImportError:  # the airflow extra is not installed: plain datetimes
        return moment
    return pendulum.instance(moment)


def build_context(task: Task, native: TaskContext, xcoms: Mapping[str, Any]) -> Context:
    """Airflow's context for `task` running in the run `native` describes."""
    dates = run_dates(native, getattr(task.dag, "timetable", None))
    logical, start, end = (_pendulum(moment) for moment in dates)
    ti = TaskInstance(task, native, xcoms)
    params = resolved_params(task, native.params)
    dag_run = DagRun(native, logical, start, end)
    events = triggering_events(native.conf)
    if events["triggering_asset_events"]:
        dag_run.run_type = "asset_triggered"
    return {
        "ti": ti,
        "task_instance": ti,
        "task": task,
        "dag": task.dag,
        "dag_run": dag_run,
        "run_id": native.run_id,
        "params": params,
        "logical_date": logical,
        "execution_date": logical,
        "data_interval_start": start,
        "data_interval_end": end,
        "ds": logical.strftime("%Y-%m-%d"),
        "ds_nodash": logical.strftime("%Y%m%d"),
        "ts": logical.isoformat(),
        "ts_nodash": logical.strftime("%Y%m%dT%H%M%S"),
        "ts_nodash_with_tz": logical.isoformat().replace("-", "").replace(":", ""),
        "prev_ds": (logical - timedelta(days=1)).strftime("%Y-%m-%d"),
        "next_ds": (logical + timedelta(days=1)).strftime("%Y-%m-%d"),
        "map_index": native.map_index,
        "macros": macros,
        "var": {"value": _VariableAccessor(False), "json": _VariableAccessor(True)},
        "conf": _Configuration(),
        "inlets": list(getattr(task, "inlets", [])),
        "outlets": list(task.options.outlets),
        "test_mode": False,
        "expanded_ti_count": None,
        **events,
    }


def resolved_params(task: Task, values: Mapping[str, Any]) -> ParamsDict:
    """The run's params, each checked against its `Param` schema (an error names the param)."""
    specs: dict[str, Param] = dict(getattr(task.dag, "param_specs", {}))
    specs.update(getattr(task, "param_specs", {}))
    merged = {name: spec.value for name, spec in specs.items()}
    merged.update(values)
    for name, spec in specs.items():
        spec.resolve(merged.get(name), name)
    return ParamsDict(merged)


class _VariableAccessor:
    def __init__(self, deserialize_json: bool) -> None:
        self._json = deserialize_json

    def __getattr__(self, key: str) -> Any:
        return Variable.get(key, deserialize_json=self._json)

    def get(self, key: str, default_var: Any = None) -> Any:
        return Variable.get(key, default_var, deserialize_json=self._json)


class _Configuration:
    """`conf` in a context is Airflow's configuration; there is none to read here."""

    def get(self, section: str, key: str, fallback: Any = None, **_: Any) -> Any:
        return fallback


@contextmanager
def current_context(context: Context) -> Iterator[Context]:
    token = _current.set(context)
    try:
        yield context
    finally:
        _current.reset(token)


def get_current_context() -> Context:
    """The Airflow context of the task running now."""
    try:
        return _current.get()
    except LookupError:
        from orchestrator.airflow_compat.exceptions import AirflowException

        raise AirflowException(
            "Current context was requested but no context was found! "
            "Are you running within an Airflow task?"
        ) from None


__all__ = ("Context", "get_current_context")
