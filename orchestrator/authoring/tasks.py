"""Tasks: the nodes of a DAG, their options and their dependencies.

A `Task` is created inside a DAG (`with DAG(...)`) and registers itself there. Dependencies
come from `>>` / `<<`, from `depends_on=[task_id, ...]`, from `chain(...)`, and (TaskFlow style)
from passing one task's `Output` (see `references`) into another task.
"""

from __future__ import annotations

import inspect
import itertools
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import TYPE_CHECKING, Any, Union

from orchestrator.authoring.assets import Asset, as_assets
from orchestrator.authoring.context import TaskContext
from orchestrator.authoring.defer import call_with_context
from orchestrator.authoring.references import Output, Ref, iter_refs
from orchestrator.authoring.retry import Duration, RetryPolicy, seconds
from orchestrator.authoring.sites import Site, caller_site
from orchestrator.authoring.trigger_rules import TriggerRule
from orchestrator.errors import DagError, TaskError, UnknownTaskError

if TYPE_CHECKING:
    from orchestrator.authoring.dag import DAG

Callback = Callable[[TaskContext], Any]
#: A hook: one callback, or a list of them; a list may hold notifiers (`orchestrator.alerts`),
#: which are sent durably from the alerts outbox rather than called.
Hooks = Callback | Sequence[Callback]


class Skip(Exception):
    """Raise inside a task to mark it `skipped` instead of `success` or `failed`."""


class Fail(Exception):
    """Raise inside a task to fail it now, with no retry: retrying cannot help (bad input)."""


@dataclass(frozen=True, kw_only=True)
class TaskOptions:
    """Per-task settings; a DAG's `default_args` supplies the ones a task leaves out."""

    trigger_rule: TriggerRule = TriggerRule.ALL_SUCCESS
    retries: int = 0
    retry_delay: Duration = 5.0
    retry_exponential_backoff: bool = False
    max_retry_delay: Duration | None = None
    retry_jitter: bool = False
    execution_timeout: Duration | None = None
    pool: str = "default"
    pool_slots: int = 1
    priority_weight: int = 1
    on_success: Hooks | None = None
    on_failure: Hooks | None = None
    on_retry: Hooks | None = None
    in_process: bool | None = None  # None: the engine's default executor mode
    # Run only once the same task in the DAG's previous run succeeded or was skipped (and,
    # with `wait_for_downstream`, its direct downstream tasks there too): see `past_runs`.
    depends_on_past: bool = False
    wait_for_downstream: bool = False
    outlets: tuple[Asset, ...] = ()  # assets this task updates when it succeeds
    # What a worker must offer to run it, such as {"GPU": 1}: with the Dask executor, only
    # workers started with those resources take it (`dask worker --resources "GPU=1"`).
    resources: Mapping[str, float] | None = field(default=None, hash=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "outlets", as_assets(self.outlets, what="outlets"))
        object.__setattr__(self, "trigger_rule", _trigger_rule(self.trigger_rule))
        object.__setattr__(self, "resources", _resources(self.resources))
        if self.wait_for_downstream:  # as in Airflow, waiting for downstream implies the past
            object.__setattr__(self, "depends_on_past", True)
        for name in ("retries", "pool_slots", "priority_weight"):
            _whole_number(name, getattr(self, name))
        if not isinstance(self.pool, str) or not self.pool:
            raise ValueError(f"pool must be a pool's name, got {self.pool!r}")
        if self.pool_slots < 1:
            raise ValueError(f"pool_slots must be 1 or more, got {self.pool_slots}")
        timeout = seconds(self.execution_timeout)
        if timeout is not None and timeout <= 0:
            raise ValueError(f"execution_timeout must be positive, got {self.execution_timeout}")
        self.retry_policy  # noqa: B018 - validates the retry fields now, at definition time

    @property
    def retry_policy(self) -> RetryPolicy:
        return RetryPolicy(
            retries=self.retries,
            delay=seconds(self.retry_delay) or 0.0,
            exponential=self.retry_exponential_backoff,
            max_delay=seconds(self.max_retry_delay),
            jitter=self.retry_jitter,
        )

    @property
    def timeout_seconds(self) -> float | None:
        return seconds(self.execution_timeout)

    @classmethod
    def build(cls, defaults: Mapping[str, Any], given: Mapping[str, Any]) -> TaskOptions:
        """Merge a DAG's defaults with a task's own options, naming any unknown option."""
        known = {f.name for f in fields(cls)}
        for name in itertools.chain(defaults, given):
            if name not in known:
                raise TypeError(f"unknown task option {name!r}; known: {', '.join(sorted(known))}")
        return cls(**{**defaults, **given})


OPTION_NAMES = frozenset(field.name for field in fields(TaskOptions))


def _whole_number(name: str, value: object) -> None:
    # bool is an int subclass, but `retries=True` is a mistake, not one retry.
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} must be a whole number, got {value!r}")


def _resources(value: Mapping[str, float] | None) -> dict[str, float] | None:
    if value is None:
        return None
    if not isinstance(value, Mapping) or not all(
        isinstance(name, str)
        and name
        and isinstance(amount, int | float)
        and not isinstance(amount, bool)
        and amount > 0
        for name, amount in value.items()
    ):
        raise ValueError(
            f"resources must map resource names to positive amounts, such as {{'GPU': 1}}, "
            f"got {value!r}"
        )
    return {name: float(amount) for name, amount in value.items()}


def _trigger_rule(value: TriggerRule | str) -> TriggerRule:
    try:
        return TriggerRule(value)
    except ValueError:
        choices = ", ".join(rule.value for rule in TriggerRule)
        raise ValueError(f"unknown trigger_rule {value!r}; choose one of: {choices}") from None


Dependable = Union["Task", Output, Sequence[Union["Task", Output]]]


def as_tasks(item: Dependable) -> list[Task]:
    """The tasks named by a task, an `Output`, or a list of either."""
    if isinstance(item, Task):
        return [item]
    if isinstance(item, Output):
        return [item.task]
    if isinstance(item, Sequence) and not isinstance(item, str):
        return [task for element in item for task in as_tasks(element)]
    raise TypeError(f"cannot make a dependency on {item!r}: expected a task or its output")


class Task:
    """One node of a DAG. Subclasses say what running it means (`run`)."""

    def __init__(
        self,
        *,
        task_id: str,
        dag: DAG | None = None,
        depends_on: Iterable[str] = (),
        **options: Any,
    ) -> None:
        from orchestrator.authoring.dag import DAG  # the DAG module imports this one

        self.site = caller_site(self)
        owner = dag or DAG.current()
        if owner is None:
            raise DagError(
                f"task {task_id!r} was created outside a DAG; create tasks inside `with DAG(...):`"
                " or a function decorated with `@dag`",
                file=self.site.file,
                line=self.site.line,
            )
        _check_task_id(task_id, self.site)
        self.task_id = task_id
        self.dag = owner
        self.options = TaskOptions.build(owner.default_args, options)
        self.upstream_task_ids: set[str] = set()
        self.downstream_task_ids: set[str] = set()
        self.depends_on = tuple(depends_on)
        self.expand_inputs: dict[str, Any] | None = None
        self.is_branch = False
        # A branch's unchosen tasks take every task below them along (Airflow's short circuit),
        # not only themselves; a task a chosen path also reaches still follows its rule.
        self.skips_whole_downstream = False
        # Airflow's setup and teardown: a teardown (`all_done_setup_success`) needs one of its
        # setups to succeed, and clearing work clears the setups it needs (`clear_scope`).
        self.is_setup = False
        self.is_teardown = False
        owner.add_task(self)

    # -- options as attributes -----------------------------------------------------------------

    def __setattr__(self, name: str, value: Any) -> None:
        """`task.trigger_rule = "all_done"` (any option) takes effect, validated as at creation.

        Without this, the assignment made a stray attribute the engine never read. A subclass
        with its own property for an option (the Airflow layer's) keeps it.
        """
        if name in OPTION_NAMES and not hasattr(type(self), name):
            self.options = replace(self.options, **{name: value})
        else:
            super().__setattr__(name, value)

    def __getattr__(self, name: str) -> Any:
        if name in OPTION_NAMES and "options" in self.__dict__:
            return getattr(self.options, name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    # -- what running means -------------------------------------------------------------------

    def run(self, inputs: dict[str, Any], context: TaskContext) -> Any:
        """Run the task's code with its resolved inputs; return its (JSON-safe) result.

        Returns an awaitable when `is_async` is true.
        """
        raise NotImplementedError(f"{type(self).__name__} must implement run()")

    # -- deferral (see orchestrator/authoring/defer.py) --------------------------------------------

    @property
    def defers_at_start(self) -> bool:
        """True for tasks that wait on a trigger from their first moment (deferrable sensors)."""
        return False

    def first_deferral(self, inputs: dict[str, Any], context: TaskContext) -> Any:
        """The `Defer` such a task starts with; called in the engine, with no slot taken.

        `inputs` are only read: without a `Ref` in them, they are the task's own, not a copy.
        """
        raise TaskError(f"{type(self).__name__} does not defer at start")

    def resume_name(self, target: str | Callable[..., Any]) -> str:
        """The stored name of a resume target; `TaskError` if this task cannot resume in it."""
        raise TaskError(f"{type(self).__name__} tasks cannot resume after a deferral")

    def resume_target(self, name: str) -> Callable[..., Any]:
        """The callable a stored resume name stands for."""
        raise TaskError(f"{type(self).__name__} tasks cannot resume after a deferral")

    def call_resume(
        self, target: Callable[..., Any], context: TaskContext, event: Any, **kwargs: Any
    ) -> Any:
        """Call the resume target with the event: `target(event, **kwargs)`."""
        return call_with_context(target, context, event, **kwargs)

    @property
    def is_async(self) -> bool:
        """True when the task's code is a coroutine function: it runs in the engine's loop."""
        return inspect.iscoroutinefunction(self.run)

    @property
    def inputs(self) -> dict[str, Any]:
        """The task's inputs, possibly holding `Ref`s; resolved just before it runs."""
        return {}

    @property
    def is_mapped(self) -> bool:
        return self.expand_inputs is not None

    def input_refs(self) -> Iterator[Ref]:
        yield from iter_refs(self.inputs)
        yield from iter_refs(self.expand_inputs or {})

    # -- dependencies ---------------------------------------------------------------------------

    def link_input_refs(self) -> None:
        """Make an edge from every task whose output or param this task's inputs reference."""
        for ref in self.input_refs():
            if isinstance(ref, Output):
                self.set_upstream(ref.task)  # refuses an output from another DAG
            for upstream_id in ref.upstream_task_ids():
                self.dag.add_edge(upstream_id, self.task_id)

    def set_downstream(self, other: Dependable) -> None:
        for task in as_tasks(other):
            self._check_same_dag(task)
            self.dag.add_edge(self.task_id, task.task_id)

    def set_upstream(self, other: Dependable) -> None:
        for task in as_tasks(other):
            self._check_same_dag(task)
            self.dag.add_edge(task.task_id, self.task_id)

    def _check_same_dag(self, other: Task) -> None:
        # Edges are stored by task id: an edge to another DAG's task would silently attach to
        # a same-named task here, or to nothing.
        if other.dag is not self.dag:
            site = caller_site()  # the line that wrote the dependency
            raise DagError(
                f"task {self.task_id!r} of DAG {self.dag.dag_id!r} cannot depend on (or be a "
                f"dependency of) task {other.task_id!r} of DAG {other.dag.dag_id!r}; dependencies "
                "stay inside one DAG (to wait for another DAG, use a sensor)",
                file=site.file,
                line=site.line,
            )

    def __rshift__(self, other: Dependable) -> Dependable:
        self.set_downstream(other)
        return other

    def __lshift__(self, other: Dependable) -> Dependable:
        self.set_upstream(other)
        return other

    def __rrshift__(self, other: Dependable) -> Task:
        self.set_upstream(other)
        return self

    def __rlshift__(self, other: Dependable) -> Task:
        self.set_downstream(other)
        return self

    def resolve_string_dependencies(self) -> None:
        """Turn `depends_on=[...]` ids into edges; an unknown id is an error at the task's line."""
        for upstream_id in self.depends_on:
            if upstream_id not in self.dag.tasks:
                raise UnknownTaskError(
                    f"task {self.task_id!r} depends on {upstream_id!r}, which is not a task of "
                    f"DAG {self.dag.dag_id!r} (its tasks: {', '.join(sorted(self.dag.tasks))})",
                    file=self.site.file,
                    line=self.site.line,
                )
            self.dag.add_edge(upstream_id, self.task_id)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.dag.dag_id}.{self.task_id}>"


def _check_task_id(task_id: str, site: Site) -> None:
    if not isinstance(task_id, str) or not task_id or len(task_id) > 250:
        raise DagError(
            f"task_id must be a non-empty string of at most 250 characters: {task_id!r}",
            file=site.file,
            line=site.line,
        )
    if any(ch in task_id for ch in "/\\\0") or task_id in (".", ".."):
        raise DagError(
            f"task_id {task_id!r} may not contain '/', '\\' or NUL, nor be '.' or '..' "
            "(it names log paths)",
            file=site.file,
            line=site.line,
        )


def chain(*items: Dependable) -> None:
    """Make each item run after the one before it; two lists of equal length pair up."""
    for left, right in itertools.pairwise(items):
        left_tasks, right_tasks = as_tasks(left), as_tasks(right)
        if _is_list(left) and _is_list(right):
            if len(left_tasks) != len(right_tasks):
                raise ValueError(
                    f"chain() pairs two adjacent lists element by element, but they have "
                    f"{len(left_tasks)} and {len(right_tasks)} tasks"
                )
            for upstream, downstream in zip(left_tasks, right_tasks, strict=True):
                upstream.set_downstream(downstream)
            continue
        for upstream in left_tasks:
            upstream.set_downstream(right_tasks)


def _is_list(item: Dependable) -> bool:
    return isinstance(item, Sequence) and not isinstance(item, str)


def map_combinations(task_id: str, expand: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One dict of keyword arguments per mapped task instance: the product of the lists.

    Like Airflow, expanding over two lists of 2 and 3 items gives 6 instances.
    """
    for name, values in expand.items():
        if not isinstance(values, list | tuple):
            raise TypeError(
                f"task {task_id!r} is expanded over {name!r}, which must be a list at run time, "
                f"got {type(values).__name__}"
            )
    names = list(expand)
    return [dict(zip(names, combo, strict=True)) for combo in itertools.product(*expand.values())]
