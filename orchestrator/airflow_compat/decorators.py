"""TaskFlow: Airflow's `@task` (and `.branch`, `.short_circuit`, `.bash`, `.sensor`,
`.virtualenv`, `.external_python`), `@task_group`, `@setup` / `@teardown`. A call inside a DAG
adds an operator and returns its `XComArg`."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

from orchestrator.airflow_compat.baseoperator import BaseOperator
from orchestrator.airflow_compat.exceptions import AirflowException
from orchestrator.airflow_compat.interpreters import (
    ExternalPythonOperator,
    PythonVirtualenvOperator,
)
from orchestrator.airflow_compat.operators import (
    BranchPythonOperator,
    PythonOperator,
    ShortCircuitOperator,
    call_with_context,
    run_bash,
)
from orchestrator.airflow_compat.sensors import PythonSensor
from orchestrator.airflow_compat.taskgroup import TaskGroup, current_group
from orchestrator.airflow_compat.templating import environment, render_value
from orchestrator.airflow_compat.xcom import XComArg
from orchestrator.authoring.dag import DAG as NativeDAG
from orchestrator.authoring.references import Output


class _DecoratedMixIn:
    """The TaskFlow form of an operator: a call's arguments are its op_args and op_kwargs."""

    def apply_mapped(self, values: dict[str, Any]) -> None:
        for name, value in values.items():
            if name == "__kwargs__":
                self.op_kwargs.update(value)  # type: ignore[attr-defined]
            else:
                self.op_kwargs[name] = value  # type: ignore[attr-defined]


class DecoratedPythonOperator(_DecoratedMixIn, PythonOperator):
    pass


class DecoratedBranchOperator(_DecoratedMixIn, BranchPythonOperator):
    pass


class DecoratedShortCircuitOperator(_DecoratedMixIn, ShortCircuitOperator):
    pass


class DecoratedSensorOperator(_DecoratedMixIn, PythonSensor):
    """`@task.sensor`: the function is the poke; it returns a bool or a `PokeReturnValue`."""


class DecoratedVirtualenvOperator(_DecoratedMixIn, PythonVirtualenvOperator):
    pass


class DecoratedExternalPythonOperator(_DecoratedMixIn, ExternalPythonOperator):
    pass


class DecoratedBashOperator(_DecoratedMixIn, PythonOperator):
    """`@task.bash`: the function returns a command (a Jinja template), which bash runs."""

    def execute_callable(self, context: Any) -> Any:
        command = call_with_context(self.python_callable, self.op_args, self.op_kwargs, context)
        if not isinstance(command, str) or not command.strip():
            raise TypeError(
                "The returned value from the TaskFlow callable must be a non-empty string."
            )
        command = render_value(command, context, environment(self.dag), (".sh", ".bash"))
        code, last = run_bash(command, None, None)  # type: ignore[arg-type]
        if code == 99:
            from orchestrator.airflow_compat.exceptions import AirflowSkipException

            raise AirflowSkipException("Bash command returned exit code 99. Skipping.")
        if code != 0:
            raise AirflowException(
                f"Bash command failed. The command returned a non-zero exit code {code}."
            )
        return last


class TaskFunction:
    """A function decorated with `@task`: call it in a DAG to add a task."""

    def __init__(
        self,
        function: Callable[..., Any],
        operator_class: type[BaseOperator],
        options: dict[str, Any],
        partial_kwargs: dict[str, Any] | None = None,
    ) -> None:
        self.function = function
        self.operator_class = operator_class
        self.options = options
        self.partial_kwargs = partial_kwargs or {}
        functools.update_wrapper(self, function)

    def _operator(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> BaseOperator:
        options = dict(self.options)
        name = options.pop("task_id", None) or self.function.__name__
        owner = options.get("dag") or NativeDAG.current()
        group = current_group()
        full = group.child_id(name) if group else name
        if owner is not None:
            full = owner.unique_task_id(full)
        task_id = full[len(group.child_id("")) :] if group else full
        if "doc_md" not in options and self.function.__doc__:
            options["doc_md"] = inspect.cleandoc(self.function.__doc__)  # as Airflow's @task
        return self.operator_class(
            task_id=task_id,
            python_callable=self.function,
            op_args=args,
            op_kwargs={**self.partial_kwargs, **kwargs},
            **options,
        )

    def __call__(self, *args: Any, **kwargs: Any) -> XComArg:
        return XComArg(self._operator(args, kwargs))

    def override(self, **options: Any) -> TaskFunction:
        return TaskFunction(
            self.function, self.operator_class, {**self.options, **options}, self.partial_kwargs
        )

    def partial(self, **kwargs: Any) -> TaskFunction:
        return TaskFunction(
            self.function, self.operator_class, self.options, {**self.partial_kwargs, **kwargs}
        )

    def expand(self, **mapped: Any) -> XComArg:
        operator = self._operator((), {})
        operator.expand_inputs = mapped
        operator._link_refs(mapped)
        return XComArg(operator)

    def expand_kwargs(self, mapped: Any) -> XComArg:
        return self.expand(__kwargs__=mapped)


def _decorator(operator_class: type[BaseOperator], **preset: Any) -> Callable[..., Any]:
    def decorate(python_callable: Callable[..., Any] | None = None, **options: Any) -> Any:
        options = {**preset, **options}
        if python_callable is not None:
            return TaskFunction(python_callable, operator_class, options)
        return lambda function: TaskFunction(function, operator_class, options)

    return decorate


class _TaskDecorator:
    """`@task`, `@task(...)` and its kinds: `.branch`, `.short_circuit`, `.bash`, `.sensor`, ..."""

    def __init__(self) -> None:
        self.python = _decorator(DecoratedPythonOperator)
        self.branch = _decorator(DecoratedBranchOperator)
        self.short_circuit = _decorator(DecoratedShortCircuitOperator)
        self.bash = _decorator(DecoratedBashOperator)
        self.sensor = _decorator(DecoratedSensorOperator)
        self.virtualenv = _decorator(DecoratedVirtualenvOperator)
        self.external_python = _decorator(DecoratedExternalPythonOperator)

    def __call__(self, python_callable: Callable[..., Any] | None = None, **options: Any) -> Any:
        return self.python(python_callable, **options)

    def __getattr__(self, name: str) -> Any:
        raise AttributeError(
            f"@task.{name} is not supported by orchestrator's Airflow compatibility "
            "(supported: @task, @task.branch, @task.short_circuit, @task.bash, @task.sensor, "
            "@task.virtualenv, @task.external_python)"
        )


task = _TaskDecorator()


class SetupOperator(DecoratedPythonOperator):
    """A `@setup` task (`as_setup`)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.as_setup()


class TeardownOperator(DecoratedPythonOperator):
    """A `@teardown` task: runs whatever the work did if one of its setups succeeded; the
    run's state ignores it unless `on_failure_fail_dagrun` (`as_teardown`)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.as_teardown()


setup = _decorator(SetupOperator)
teardown = _decorator(TeardownOperator)


def task_group(python_callable: Callable[..., Any] | None = None, **options: Any) -> Any:
    """`@task_group`: calling the function builds its tasks inside a `TaskGroup`."""

    def decorate(function: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(function)
        def build(*args: Any, **kwargs: Any) -> Any:
            group_id = options.get("group_id") or function.__name__
            with TaskGroup(**{**options, "group_id": group_id}) as group:
                returned = function(*args, **kwargs)
            return returned if isinstance(returned, Output | list) else group

        return build

    return decorate(python_callable) if python_callable is not None else decorate


__all__ = ("setup", "task", "task_group", "teardown")
