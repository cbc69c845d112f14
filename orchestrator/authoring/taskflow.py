"""`@task`: plain Python functions as tasks, with results flowing into downstream tasks.

```python
@task(retries=2)
def extract() -> list[int]:
    return [1, 2, 3]

@task
def total(values: list[int]) -> int:
    return sum(values)

with DAG("sums"):
    total(extract())        # the edge extract >> total, and the value, in one call
```
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import fields
from typing import Any, overload

from orchestrator.authoring.context import TaskContext
from orchestrator.authoring.dag import DAG
from orchestrator.authoring.defer import find_function, function_name
from orchestrator.authoring.references import Output, Ref, iter_refs
from orchestrator.authoring.sites import caller_site
from orchestrator.authoring.tasks import OPTION_NAMES, Task
from orchestrator.errors import DagError, TaskError


class FunctionTask(Task):
    """A task that calls a Python function with its (resolved) arguments."""

    def __init__(
        self,
        function: Callable[..., Any],
        *,
        task_id: str,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
        expand: dict[str, Any] | None = None,
        is_branch: bool = False,
        skips_whole_downstream: bool = False,
        **options: Any,
    ) -> None:
        super().__init__(task_id=task_id, **options)
        self.function = function
        self._inputs = {"args": list(args), "kwargs": dict(kwargs or {})}
        self.expand_inputs = expand
        self.is_branch = is_branch
        self.skips_whole_downstream = skips_whole_downstream
        self._signature = inspect.signature(function)
        self._context_names = context_parameters(self._signature)
        # Asked at each try's start: `inspect.iscoroutinefunction` unwraps and checks each time.
        self._is_async = inspect.iscoroutinefunction(function)
        self.link_input_refs()

    @property
    def inputs(self) -> dict[str, Any]:
        return self._inputs

    @property
    def is_async(self) -> bool:
        return self._is_async

    def resume_name(self, target: str | Callable[..., Any]) -> str:
        return function_name(target, self.function.__globals__)

    def resume_target(self, name: str) -> Callable[..., Any]:
        return find_function(name, self.function.__globals__) or _missing(name, self.task_id)

    def run(self, inputs: dict[str, Any], context: TaskContext) -> Any:
        args = inputs.get("args", [])
        kwargs = {**inputs.get("kwargs", {}), **inputs.get("mapped", {})}
        if self._context_names:
            bound = self._signature.bind_partial(*args, **kwargs).arguments
            for name in self._context_names - bound.keys():
                kwargs[name] = context if name == "context" else getattr(context, name)
        return self.function(*args, **kwargs)


def context_parameters(signature: inspect.Signature) -> frozenset[str]:
    """The parameters filled from the run context when no argument gives them, as in Airflow.

    `context` gets the whole `TaskContext`; a parameter named after one of its fields
    (`params`, `conf`, `run_id`, `logical_date`, `try_number`, ...) gets that field, if it has
    no default or defaults to None (a real default is the function's own choice).
    """
    fields_by_name = {field.name for field in fields(TaskContext)}
    return frozenset(
        name
        for name, parameter in signature.parameters.items()
        if parameter.kind not in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD)
        and (
            name == "context"
            or (name in fields_by_name and parameter.default in (parameter.empty, None))
        )
    )


def _missing(name: str, task_id: str) -> Callable[..., Any]:
    raise TaskError(
        f"task {task_id!r} deferred to resume in {name!r}, which its DAG file no longer defines"
    )


class TaskFunction:
    """A decorated function: calling it inside a DAG adds a task and returns its `Output`."""

    def __init__(
        self,
        function: Callable[..., Any],
        options: dict[str, Any],
        *,
        task_id: str | None = None,
        is_branch: bool = False,
        skips_whole_downstream: bool = False,
        partial_kwargs: dict[str, Any] | None = None,
    ) -> None:
        self.function = function
        self.options = options
        self.task_id = task_id
        self.is_branch = is_branch
        self.skips_whole_downstream = skips_whole_downstream
        self.partial_kwargs = partial_kwargs or {}
        self.__name__ = getattr(function, "__name__", "task")
        self.__doc__ = function.__doc__

    def __call__(self, *args: Any, **kwargs: Any) -> Output:
        return Output(self._add(args=args, kwargs={**self.partial_kwargs, **kwargs}))

    def override(self, **options: Any) -> TaskFunction:
        """The same function with other options (`task_id`, `retries`, `pool`, ...)."""
        task_id = options.pop("task_id", self.task_id)
        _checked_options(options)
        return TaskFunction(
            self.function,
            {**self.options, **options},
            task_id=task_id,
            is_branch=self.is_branch,
            skips_whole_downstream=self.skips_whole_downstream,
            partial_kwargs=self.partial_kwargs,
        )

    def partial(self, **kwargs: Any) -> TaskFunction:
        """Fix some arguments for every mapped instance; call `.expand(...)` next."""
        return TaskFunction(
            self.function,
            self.options,
            task_id=self.task_id,
            is_branch=self.is_branch,
            skips_whole_downstream=self.skips_whole_downstream,
            partial_kwargs={**self.partial_kwargs, **kwargs},
        )

    def expand(self, **kwargs: Any) -> Output:
        """One task instance per element (the product, for several lists), decided at run time.

        Each value is a list, or the `Output` of a task that returns one. Downstream tasks get
        the list of all the instances' results, in order.
        """
        if not kwargs:
            raise TypeError(f"{self.__name__}.expand() needs at least one keyword argument")
        for name, value in kwargs.items():
            if not isinstance(value, list | tuple) and not any(iter_refs(value)):
                raise TypeError(
                    f"{self.__name__}.expand({name}=...) needs a list or a task's output, "
                    f"got {type(value).__name__}"
                )
        return Output(self._add(args=(), kwargs=self.partial_kwargs, expand=dict(kwargs)))

    def _add(
        self, *, args: tuple[Any, ...], kwargs: dict[str, Any], expand: dict[str, Any] | None = None
    ) -> FunctionTask:
        pipeline = DAG.current()
        if pipeline is None:
            site = caller_site()
            raise DagError(
                f"task function {self.__name__!r} was called outside a DAG; call it inside "
                f"`with DAG(...):` or an `@dag` function (use `{self.__name__}.function(...)` "
                "to call the plain function)",
                file=site.file,
                line=site.line,
            )
        _check_arguments(self.__name__, args, {**kwargs, **(expand or {})})
        task_id = self.task_id or pipeline.unique_task_id(self.__name__)
        return FunctionTask(
            self.function,
            task_id=task_id,
            args=args,
            kwargs=kwargs,
            expand=expand,
            is_branch=self.is_branch,
            skips_whole_downstream=self.skips_whole_downstream,
            **self.options,
        )


def _check_arguments(name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """Refuse, at the call's line, an argument that cannot be stored as JSON.

    Arguments are stored with the run and sent to worker processes as JSON, so a function or
    an object would otherwise fail each try of the task, far from the line that passed it.
    """
    given = [(f"argument {i + 1}", value) for i, value in enumerate(args)]
    for label, value in [*given, *((f"argument {key!r}", v) for key, v in kwargs.items())]:
        found = _not_json(value)
        if found is not None:
            site = caller_site()
            raise DagError(
                f"{label} of task {name!r} is {found}, which is not a JSON value: a task's "
                "arguments are stored and sent to worker processes as JSON. Pass plain data "
                "(str, numbers, lists, dicts) or another task's output; import or call the "
                "function inside the task instead",
                file=site.file,
                line=site.line,
            )


def _not_json(value: Any) -> str | None:
    """What in `value` is not JSON (and not a task's output), described; None if all is."""
    if value is None or isinstance(value, str | int | float | bool | Ref):
        return None
    if isinstance(value, list | tuple):
        return next((found for item in value if (found := _not_json(item))), None)
    if isinstance(value, dict):
        for key, item in value.items():
            found = f"a dict with the key {key!r}" if not isinstance(key, str) else _not_json(item)
            if found is not None:
                return found
        return None
    if callable(value):
        kind = "a class" if isinstance(value, type) else "a function"
        return f"{kind} ({getattr(value, '__qualname__', repr(value))})"
    return f"a {type(value).__name__} object"


def _checked_options(options: dict[str, Any]) -> dict[str, Any]:
    """Refuse an unknown option at the decorator's line (not at each call of the task)."""
    unknown = sorted(set(options) - OPTION_NAMES)
    if not unknown:
        return options
    site = caller_site()
    hint = (
        '; a task returns one value here: return a dict and pass `out["key"]` downstream'
        if "multiple_outputs" in unknown
        else f"; known: {', '.join(sorted(OPTION_NAMES))}"
    )
    raise DagError(
        f"unknown task option {', '.join(map(repr, unknown))}{hint}", file=site.file, line=site.line
    )


class _TaskDecorator:
    """`@task`, `@task(...)` and `@task.branch`."""

    @overload
    def __call__(self, function: Callable[..., Any], /) -> TaskFunction: ...

    @overload
    def __call__(
        self, function: None = None, /, *, task_id: str | None = None, **options: Any
    ) -> Callable[[Callable[..., Any]], TaskFunction]: ...

    def __call__(
        self,
        function: Callable[..., Any] | None = None,
        /,
        *,
        task_id: str | None = None,
        **options: Any,
    ) -> TaskFunction | Callable[[Callable[..., Any]], TaskFunction]:
        _checked_options(options)
        if function is not None:
            return TaskFunction(function, options, task_id=task_id)
        return lambda fn: TaskFunction(fn, options, task_id=task_id)

    def branch(
        self,
        function: Callable[..., Any] | None = None,
        /,
        *,
        skip_whole_downstream: bool = False,
        **options: Any,
    ) -> Any:
        """A task that returns the id (or list of ids) of the downstream tasks to follow.

        Its other direct downstream tasks are skipped; returning None skips them all. Tasks
        further down follow their trigger rules, unless `skip_whole_downstream=True`: then
        every task below an unchosen one is skipped too, whatever its rule (Airflow's
        `ShortCircuitOperator` default), except a task that a chosen path also reaches.
        """
        task_id = options.pop("task_id", None)
        _checked_options(options)

        def make(fn: Callable[..., Any]) -> TaskFunction:
            return TaskFunction(
                fn,
                options,
                task_id=task_id,
                is_branch=True,
                skips_whole_downstream=skip_whole_downstream,
            )

        return make(function) if function is not None else make


task = _TaskDecorator()
