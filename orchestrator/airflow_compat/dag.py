"""Airflow's `DAG` and `@dag`: its arguments mapped onto the native DAG and schedules.

Airflow's schedule spellings (`schedule=` or Airflow 2's `schedule_interval=` / `timetable=`):
None, a cron string or preset, `@once`, a `timedelta`, assets (data-aware), or a built-in
timetable (timetables.py). The timezone is
the start date's, as in Airflow; `catchup` defaults to False (Airflow 3's default; Airflow 2's
was True). Arguments with no meaning here (`sla_miss_callback`, ...) are
accepted and reported once as ignored.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

from orchestrator.airflow_compat.exceptions import AirflowException
from orchestrator.airflow_compat.models import Param
from orchestrator.airflow_compat.timetables import Timetable, split_schedule, zone_name
from orchestrator.authoring.dag import DAG as NativeDAG
from orchestrator.authoring.dag import DagFactory
from orchestrator.authoring.moments import parse_moment
from orchestrator.authoring.references import ParamRef
from orchestrator.authoring.schedules import Schedule
from orchestrator.authoring.sites import Site, caller_site
from orchestrator.authoring.tasks import Task

logger = logging.getLogger("orchestrator.airflow_compat")
_reported: set[str] = set()
NOTSET: Any = object()

#: DAG arguments accepted for compatibility that change nothing here.
_IGNORED_DAG_ARGS = frozenset(
    {
        "sla_miss_callback",
        "default_view",
        "orientation",
        "access_control",
        "owner_links",
        "auto_register",
        "fail_stop",
        "max_consecutive_failed_dag_runs",
        "dag_display_name",
        "jinja_environment_kwargs",
        "template_undefined",
        "on_retry_callback",
    }
)


def report_ignored(what: str) -> None:
    """Log once per process that an Airflow argument is accepted but has no effect here."""
    if what not in _reported:
        _reported.add(what)
        logger.info("Airflow argument %s is accepted and ignored by orchestrator", what)


class OnceSchedule(Schedule):
    """`@once`: a single interval, [start_date, start_date + 1 s), so exactly one run."""

    def __init__(self, start: float) -> None:
        self.start = start

    @property
    def description(self) -> str:
        return "@once"

    def next_tick(self, moment: float) -> float:
        if moment < self.start:
            return self.start
        return self.start + 1 if moment < self.start + 1 else math.inf

    def tick_at_or_before(self, moment: float) -> float | None:
        if moment < self.start:
            return None
        return self.start if moment < self.start + 1 else self.start + 1


class DAG(NativeDAG):
    """Airflow's `DAG(dag_id, schedule=..., start_date=..., default_args=..., ...)`."""

    def __init__(self, dag_id: str, description: str | None = None, **kwargs: Any) -> None:
        site = kwargs.pop("site", None) or caller_site()
        for name in _IGNORED_DAG_ARGS & set(kwargs):
            report_ignored(f"DAG({name}=...)")
            kwargs.pop(name)
        self.airflow_default_args: dict[str, Any] = dict(kwargs.pop("default_args", None) or {})
        self.param_specs = _param_specs(kwargs.pop("params", None) or {})
        self.doc_md = kwargs.pop("doc_md", None)
        self.template_searchpath = _as_list(kwargs.pop("template_searchpath", None))
        self.user_defined_macros = dict(kwargs.pop("user_defined_macros", None) or {})
        self.user_defined_filters = dict(kwargs.pop("user_defined_filters", None) or {})
        self.render_template_as_native_obj = bool(
            kwargs.pop("render_template_as_native_obj", False)
        )
        self.on_success_callback = kwargs.pop("on_success_callback", None)
        self.on_failure_callback = kwargs.pop("on_failure_callback", None)
        native = self._native_arguments(kwargs)
        super().__init__(
            dag_id,
            description=description or "",
            params={name: spec.value for name, spec in self.param_specs.items()},
            site=site,
            on_success=self._run_callback("on_success_callback"),
            on_failure=self._run_callback("on_failure_callback"),
            **native,
        )
        if self._once_start is not None:
            self.starts = dataclasses.replace(self.starts, schedule=OnceSchedule(self._once_start))

    @property
    def leaves(self) -> list[str]:
        """The tasks a run's state comes from: as in Airflow, the work's leaves, not teardowns
        (a teardown with `on_failure_fail_dagrun` is work: its failure fails the run)."""
        leaves = [
            task_id
            for task_id, task in self.tasks.items()
            if not _ignorable(task)
            and all(_ignorable(self.tasks[t]) for t in task.downstream_task_ids)
        ]
        return leaves or super().leaves

    def check_conf(self, conf: Mapping[str, Any]) -> None:
        """Airflow refuses a trigger whose conf breaks a `Param`'s schema; so do we."""
        values = {name: spec.value for name, spec in self.param_specs.items()}
        values.update({name: conf[name] for name in values.keys() & conf.keys()})
        for name, spec in self.param_specs.items():
            try:
                spec.resolve(values[name], name)
            except AirflowException as error:
                raise ValueError(str(error)) from None

    def _native_arguments(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        schedule = _schedule_of(kwargs)
        start_date = kwargs.pop("start_date", None) or self.airflow_default_args.get("start_date")
        end_date = kwargs.pop("end_date", None) or self.airflow_default_args.get("end_date")
        if "dagrun_timeout" in kwargs:
            kwargs["run_timeout"] = kwargs.pop("dagrun_timeout")
        if "concurrency" in kwargs:
            kwargs.setdefault("max_active_tasks", kwargs.pop("concurrency"))
        catchup = kwargs.pop("catchup", None)
        cron, run_on = split_schedule(schedule)
        #: Airflow's `dag.timetable` when one was given: it says what a manual run covers.
        self.timetable = schedule if isinstance(schedule, Timetable) else None
        self._once_start: float | None = None
        if cron == "@once":
            moment = start_date or datetime.now()
            self._once_start = _epoch(moment)
            cron = None
        # A start date at a fixed offset has no zone to evaluate crons in: UTC, as before.
        timezone = zone_name(getattr(start_date, "tzinfo", None), fallback="UTC")
        native: Schedule | Timetable | str | timedelta | None = cron
        if isinstance(cron, Timetable):  # delta timetables tick from the start date
            native = cron.native(
                start=parse_moment(start_date, timezone=timezone, what="start_date")
            )
        return {
            **kwargs,
            "schedule": native,
            "run_on": run_on,
            "timezone": timezone,
            "start_date": start_date if cron is not None else None,
            "end_date": end_date if cron is not None else None,
            "catchup": bool(catchup) if catchup is not None else False,
        }

    def _run_callback(self, name: str) -> Callable[[Any], Any] | None:
        callback = getattr(self, name)
        if callback is None:
            return None
        callbacks = callback if isinstance(callback, list | tuple) else [callback]

        def call(run_id: Any) -> None:
            context = {"dag": self, "run_id": run_id, "reason": name.removeprefix("on_")}
            for each in callbacks:
                each(context)

        return call

    # -- Airflow's reading API -------------------------------------------------------------------

    @property
    def task_dict(self) -> dict[str, Task]:
        return self.tasks

    @property
    def task_ids(self) -> list[str]:
        return list(self.tasks)

    def get_task(self, task_id: str) -> Task:
        return self.tasks[task_id]

    def has_task(self, task_id: str) -> bool:
        return task_id in self.tasks

    @property
    def fileloc(self) -> str:
        return self.site.file

    @property
    def folder(self) -> str:
        import os

        return os.path.dirname(self.site.file)


def _schedule_of(kwargs: dict[str, Any]) -> Any:
    given = [kwargs.pop(name, NOTSET) for name in ("schedule", "schedule_interval", "timetable")]
    chosen = [value for value in given if value is not NOTSET]
    if len(chosen) > 1:
        raise ValueError("give the DAG one of schedule, schedule_interval and timetable, not both")
    return chosen[0] if chosen else None


def _param_specs(params: Mapping[str, Any]) -> dict[str, Param]:
    return {
        name: value if isinstance(value, Param) else Param(value) for name, value in params.items()
    }


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


def _epoch(moment: Any) -> float:
    if isinstance(moment, datetime):
        if moment.tzinfo is None:
            from datetime import UTC

            moment = moment.replace(tzinfo=UTC)
        stamp: float = moment.timestamp()
        return stamp
    return float(moment)


class AirflowDagFactory(DagFactory):
    """What Airflow's `@dag` returns: call it (or let the loader) to build the DAG."""

    def build(self, params: Mapping[str, Any], *, site: Site) -> NativeDAG:
        import inspect

        signature = inspect.signature(self.function)
        names = [
            p.name
            for p in signature.parameters.values()
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
        ]
        defaults = {
            p.name: p.default
            for p in signature.parameters.values()
            if p.default is not inspect.Parameter.empty
        }
        options = dict(self.options)
        merged = {**defaults, **(options.pop("params", None) or {}), **params}
        if not options.get("doc_md") and self.function.__doc__:
            options["doc_md"] = inspect.cleandoc(self.function.__doc__)  # as Airflow's @dag
        pipeline = DAG(self.dag_id, params=merged, site=site, **options)
        with pipeline:
            self.function(**{name: ParamRef(name) for name in names})
        self.built = pipeline
        return pipeline


def dag(dag_id: Any = None, **options: Any) -> Any:
    """Airflow's `@dag` / `@dag(...)`: the function's parameters become the DAG's params."""
    if callable(dag_id):
        return AirflowDagFactory(dag_id, None, options)
    return lambda function: AirflowDagFactory(function, dag_id, options)


def _ignorable(task: Any) -> bool:
    """A teardown whose failure does not fail the run (Airflow's default for teardowns)."""
    return bool(getattr(task, "is_teardown", False)) and not getattr(
        task, "on_failure_fail_dagrun", False
    )


__all__ = ("DAG", "dag")
