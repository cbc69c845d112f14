"""Airflow's `BaseOperator`: a native operator that takes Airflow's arguments and context.

Running one (in a worker process, or in the engine for `EmptyOperator`) builds Airflow's
context from the native one, renders the `template_fields` of a copy of the operator (the
loaded DAG is reused by the next try, so rendering never touches it), records them beside the
try's log (`rendered`), calls
`execute(context)`, and stores the return value and pushed XComs as the task's result.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
from collections.abc import Callable, Sequence
from typing import Any

from orchestrator.airflow_compat.context import build_context, current_context
from orchestrator.airflow_compat.dag import report_ignored
from orchestrator.airflow_compat.exceptions import AirflowException
from orchestrator.airflow_compat.imports import airflow_imports
from orchestrator.airflow_compat.rendered import record_rendered
from orchestrator.airflow_compat.setup_teardown import SetupTeardownScope
from orchestrator.airflow_compat.sites import user_site
from orchestrator.airflow_compat.taskgroup import Label, TaskGroup, current_group, flatten
from orchestrator.airflow_compat.templating import render_template_fields
from orchestrator.airflow_compat.trigger_rule import native_rule
from orchestrator.airflow_compat.xcom import RunXComs, XComArg, stored_value
from orchestrator.authoring.context import TaskContext
from orchestrator.authoring.dag import DAG as NativeDAG
from orchestrator.authoring.operators import BaseOperator as NativeOperator
from orchestrator.authoring.references import Output, iter_refs

#: Airflow task arguments with a native option of the same meaning.
_NATIVE = {
    "retries": "retries",
    "retry_delay": "retry_delay",
    "retry_exponential_backoff": "retry_exponential_backoff",
    "max_retry_delay": "max_retry_delay",
    "execution_timeout": "execution_timeout",
    "pool_slots": "pool_slots",
    "priority_weight": "priority_weight",
    "depends_on_past": "depends_on_past",
    "wait_for_downstream": "wait_for_downstream",
}
_CALLBACKS = {
    "on_success_callback": "on_success",
    "on_failure_callback": "on_failure",
    "on_retry_callback": "on_retry",
}
#: Accepted for compatibility; they change nothing here (reported once each).
_IGNORED = frozenset(
    {
        "owner", "email", "email_on_failure", "email_on_retry", "queue",
        "wait_for_past_depends_before_skipping", "sla", "weight_rule",
        "run_as_user", "executor_config", "max_active_tis_per_dag", "max_active_tis_per_dagrun",
        "resources", "task_concurrency", "start_date", "end_date", "doc", "doc_rst", "doc_json",
        "doc_yaml", "task_display_name", "on_execute_callback", "on_skipped_callback",
        "executor", "map_index_template", "allow_nested_operators", "logger_name",
        "retry_jitter", "show_return_value_in_logs", "ui_color", "ui_fgcolor",
    }
)  # fmt: skip
_OWN = frozenset({"trigger_rule", "pool", "outlets", "inlets", "params", "doc_md"})
_OWN |= {"multiple_outputs", "do_xcom_push", "task_group", "dag", "default_args"}
_OWN |= {"on_failure_fail_dagrun"}


class BaseOperator(NativeOperator):
    """Subclass it and implement `execute(self, context)`, as in Airflow."""

    template_fields: Sequence[str] = ()
    template_ext: Sequence[str] = ()
    template_fields_renderers: dict[str, str] = {}  # noqa: RUF012 - Airflow's class attribute
    ui_color = "#fff"
    on_failure_fail_dagrun = False  # a run's state ignores a teardown unless this is set
    _in_engine = False  # True: run in the engine (no worker process), for trivial operators

    def __init__(self, task_id: str, **kwargs: Any) -> None:
        owner, group = _owner_of(kwargs)
        given = _with_defaults(owner, kwargs)
        _refuse_unknown(type(self).__name__, kwargs)
        self.multiple_outputs = bool(given.get("multiple_outputs", False))
        self.do_xcom_push = bool(given.get("do_xcom_push", True))
        self.doc_md = given.get("doc_md")
        self.inlets = list(given.get("inlets") or [])
        self.param_specs = _param_specs(given.get("params"))
        if given.get("on_failure_fail_dagrun"):
            self.on_failure_fail_dagrun = True
        full_id = group.child_id(task_id) if group is not None else task_id
        super().__init__(task_id=full_id, dag=owner, **self._native_options(given))
        self.site = user_site()
        self.task_group = group
        if group is not None:
            group.add(self)
        self._airflow_ready = True
        SetupTeardownScope.note(self)
        for name in self.template_fields:
            if hasattr(self, name):
                self._link_refs(getattr(self, name))

    def _native_options(self, given: dict[str, Any]) -> dict[str, Any]:
        options = {native: given[name] for name, native in _NATIVE.items() if name in given}
        for name, native in _CALLBACKS.items():
            if given.get(name) is not None:
                options[native] = self._callback(given[name])
        for name in _IGNORED & set(given):
            report_ignored(f"{name}=")
        pool = given.get("pool")
        options["pool"] = "default" if pool in (None, "default_pool") else pool
        options["trigger_rule"] = native_rule(given.get("trigger_rule", "all_success"))
        options["outlets"] = list(given.get("outlets") or [])
        if self._in_engine:
            options["in_process"] = True
        return options

    def _callback(self, callback: Any) -> Callable[[TaskContext], None]:
        callbacks = callback if isinstance(callback, list | tuple) else [callback]

        def call(native: TaskContext) -> None:
            context = build_context(self, native, {})
            if native.error is not None:  # Airflow hands failure and retry callbacks the error
                context["exception"] = AirflowException(native.error)
            for each in callbacks:
                each(context)

        return call

    # -- Airflow's attributes --------------------------------------------------------------------

    @property
    def trigger_rule(self) -> str:
        return self.options.trigger_rule.value

    @trigger_rule.setter
    def trigger_rule(self, value: Any) -> None:
        self.options = dataclasses.replace(self.options, trigger_rule=native_rule(value))

    @property
    def retries(self) -> int:
        return self.options.retries

    @property
    def output(self) -> XComArg:
        return XComArg(self)

    @property
    def dag_id(self) -> str:
        return self.dag.dag_id

    @property
    def upstream_list(self) -> list[Any]:
        return [self.dag.tasks[task_id] for task_id in sorted(self.upstream_task_ids)]

    @property
    def downstream_list(self) -> list[Any]:
        return [self.dag.tasks[task_id] for task_id in sorted(self.downstream_task_ids)]

    def __setattr__(self, name: str, value: Any) -> None:
        super().__setattr__(name, value)
        if name in type(self).template_fields and self.__dict__.get("_airflow_ready"):
            self._link_refs(value)

    def _link_refs(self, value: Any) -> None:
        for ref in iter_refs(value):
            if isinstance(ref, Output) and ref.task is not self:
                self.set_upstream(ref.task)

    # -- dependencies: groups, labels and XComArgs as well as tasks --------------------------------

    def __rshift__(self, other: Any) -> Any:
        if isinstance(other, Label):
            return other.after([self])
        self.set_downstream(flatten(other, side="roots"))
        return other

    def __lshift__(self, other: Any) -> Any:
        self.set_upstream(flatten(other, side="leaves"))
        return other

    def __rrshift__(self, other: Any) -> Any:
        self.set_upstream(flatten(other, side="leaves"))
        return self

    def __rlshift__(self, other: Any) -> Any:
        self.set_downstream(flatten(other, side="roots"))
        return self

    # -- setup and teardown (Airflow 2.7+) --------------------------------------------------------

    def as_setup(self) -> BaseOperator:
        """Mark this task a setup, as `@setup` does: the teardowns after it need it to succeed,
        and clearing the work between them clears it too (`clear_scope`)."""
        self.is_setup = True
        return self

    def as_teardown(
        self, setups: Any = None, on_failure_fail_dagrun: bool | None = None
    ) -> BaseOperator:
        """Mark this task a teardown, as `@teardown` does: it runs once its upstream tasks are
        done, whatever the work did, if one of its setups succeeded (`all_done_setup_success`),
        and the run's state ignores it unless `on_failure_fail_dagrun`. `setups` (tasks or
        XComArgs) become setups and run before it.
        """
        self.is_teardown = True
        self.trigger_rule = "all_done_setup_success"
        if on_failure_fail_dagrun is not None:
            self.on_failure_fail_dagrun = on_failure_fail_dagrun
        if setups is not None:
            for setup in flatten(setups, side="leaves"):
                if isinstance(setup, BaseOperator):
                    setup.as_setup()
                self.set_upstream(setup)
        return self

    def __enter__(self) -> SetupTeardownScope:
        """`with teardown.as_teardown(setups=setup):` the tasks made inside are the work
        between them (`setup_teardown`)."""
        self._setup_scope = SetupTeardownScope(self)
        return self._setup_scope.__enter__()

    def __exit__(self, *exc_info: object) -> None:
        self._setup_scope.__exit__(*exc_info)

    # -- dynamic task mapping -------------------------------------------------------------------

    @classmethod
    def partial(cls, **kwargs: Any) -> PartialOperator:
        return PartialOperator(cls, kwargs)

    def apply_mapped(self, values: dict[str, Any]) -> None:
        """Set this mapped instance's own arguments on the running copy."""
        for name, value in values.items():
            if name == "__kwargs__":
                self.apply_mapped(dict(value))
            else:
                setattr(self, name, value)

    # -- running ---------------------------------------------------------------------------------

    @property
    def is_async(self) -> bool:
        return False

    @property
    def inputs(self) -> dict[str, Any]:
        names = itertools.chain(type(self).template_fields, self.ref_fields())
        fields = {name: getattr(self, name, None) for name in names}
        return {
            "xcom": RunXComs(),
            "fields": {name: value for name, value in fields.items() if any(iter_refs(value))},
        }

    def ref_fields(self) -> Sequence[str]:
        """Attributes besides the template fields that may hold XComArgs."""
        return ()

    def run(self, inputs: dict[str, Any], context: TaskContext) -> Any:
        with airflow_imports():
            running = copy.copy(self)
            running.__dict__["_airflow_ready"] = False
            for name, value in inputs.get("fields", {}).items():
                setattr(running, name, value)
            running.apply_mapped(inputs.get("mapped", {}))
            airflow_context = build_context(running, context, inputs.get("xcom", {}))
            with current_context(airflow_context):
                render_template_fields(running, airflow_context)
                record_rendered(running, context.log_path)
                returned = running.execute(airflow_context)
                return running.stored_result(returned, airflow_context)

    def stored_result(self, returned: Any, context: dict[str, Any]) -> Any:
        """The native result: the XComs of this try (a branch's choice, for branches)."""
        pushed = context["ti"].pushed
        return stored_value(returned if self.do_xcom_push else None, pushed)

    def execute(self, context: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__} must implement execute(context)")

    def render_template_fields(self, context: Any, jinja_env: Any = None) -> None:
        render_template_fields(self, context)


class PartialOperator:
    """`Operator.partial(...)`: the arguments every mapped instance shares; `.expand` next."""

    def __init__(self, operator_class: type[BaseOperator], kwargs: dict[str, Any]) -> None:
        self.operator_class = operator_class
        self.kwargs = kwargs

    def expand(self, **mapped: Any) -> BaseOperator:
        # `__kwargs__` (expand_kwargs) is no argument of the operator: each mapped instance
        # gets its own arguments at run time (apply_mapped).
        own = dict.fromkeys(name for name in mapped if name != "__kwargs__")
        operator = self.operator_class(**{**self.kwargs, **own})
        operator.expand_inputs = mapped
        operator._link_refs(mapped)
        return operator

    def expand_kwargs(self, mapped: Any) -> BaseOperator:
        return self.expand(__kwargs__=mapped)


def _owner_of(kwargs: dict[str, Any]) -> tuple[NativeDAG, TaskGroup | None]:
    group = kwargs.pop("task_group", None) or current_group()
    owner = kwargs.pop("dag", None) or (group.dag if group else None) or NativeDAG.current()
    if owner is None:
        site = user_site()
        from orchestrator.errors import DagError

        raise DagError(
            "an operator was created outside a DAG: create it inside `with DAG(...):`, "
            "an @dag function, or pass dag=...",
            file=site.file,
            line=site.line,
        )
    return owner, group


def _with_defaults(owner: NativeDAG, kwargs: dict[str, Any]) -> dict[str, Any]:
    defaults = dict(getattr(owner, "airflow_default_args", {}))
    defaults.update(kwargs.pop("default_args", None) or {})
    known = set(_NATIVE) | set(_CALLBACKS) | _IGNORED | _OWN
    return {**{k: v for k, v in defaults.items() if k in known}, **kwargs}


def _refuse_unknown(name: str, kwargs: dict[str, Any]) -> None:
    known = set(_NATIVE) | set(_CALLBACKS) | _IGNORED | _OWN
    unknown = sorted(set(kwargs) - known)
    if unknown:
        raise AirflowException(
            f"Invalid arguments were passed to {name}. Invalid arguments were: {', '.join(unknown)}"
        )


def _param_specs(params: Any) -> dict[str, Any]:
    from orchestrator.airflow_compat.models import Param

    return {
        name: value if isinstance(value, Param) else Param(value)
        for name, value in (params or {}).items()
    }


def chain(*items: Any) -> None:
    """Airflow's `chain`: each item after the one before; two adjacent lists pair up."""
    for left, right in itertools.pairwise(items):
        if isinstance(left, list | tuple) and isinstance(right, list | tuple):
            if len(left) != len(right):
                raise AirflowException(
                    f"Chain not supported for different length Iterable. Got {len(left)} and "
                    f"{len(right)}."
                )
            for upstream, downstream in zip(left, right, strict=True):
                upstream >> downstream
            continue
        for upstream in left if isinstance(left, list | tuple) else [left]:
            upstream >> right


def cross_downstream(from_tasks: Sequence[Any], to_tasks: Any) -> None:
    """Every task of `from_tasks` before every task of `to_tasks`."""
    for task in from_tasks:
        task >> to_tasks


__all__ = ("BaseOperator", "chain", "cross_downstream")
