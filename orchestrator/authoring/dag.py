"""DAG: a named graph of tasks, built with `with DAG(...):` or the `@dag` decorator."""

from __future__ import annotations

import difflib
import functools
import heapq
import inspect
import math
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import timedelta
from typing import Any, ClassVar, Self

from orchestrator.authoring.references import ParamRef
from orchestrator.authoring.retry import seconds
from orchestrator.authoring.run_sources import RunStarts, parse_run_starts
from orchestrator.authoring.schedules import Schedule
from orchestrator.authoring.sites import Site, caller_site
from orchestrator.authoring.tasks import Task, TaskOptions
from orchestrator.errors import CycleError, DagError, DuplicateTaskError

_DAG_ID = re.compile(r"^[A-Za-z0-9_.\-]{1,250}$")


class DAG:
    """A pipeline: tasks, their dependencies, and run-level settings.

    ```python
    with DAG("etl", params={"day": "today"}, default_args={"retries": 2}) as pipeline:
        load(transform(extract()))
    ```
    """

    _stack: ClassVar[list[DAG]] = []
    #: Set by the loader while it imports a file: every DAG created is reported to it.
    _collector: ClassVar[list[DAG] | None] = None

    def __new__(cls, *args: Any, **kwargs: Any) -> Self:
        """Name an unknown keyword at the DAG's line, with the one meant (Python would not)."""
        known = inspect.signature(cls.__init__).parameters
        if not any(p.kind is p.VAR_KEYWORD for p in known.values()):
            for name in kwargs.keys() - known.keys():
                _refuse_keyword(name, sorted(set(known) - {"self", "site"}), kwargs.get("site"))
        return super().__new__(cls)

    def __init__(
        self,
        dag_id: str,
        *,
        description: str = "",
        params: Mapping[str, Any] | None = None,
        default_args: Mapping[str, Any] | None = None,
        max_active_runs: int = 16,
        max_active_tasks: int = 16,
        tags: tuple[str, ...] | list[str] = (),
        on_success: Callable[[Any], Any] | Sequence[Callable[[Any], Any]] | None = None,
        on_failure: Callable[[Any], Any] | Sequence[Callable[[Any], Any]] | None = None,
        schedule: str | timedelta | Schedule | None = None,
        timezone: str = "UTC",
        start_date: Any = None,
        end_date: Any = None,
        catchup: bool | int = False,
        run_on: Any = (),
        batch_window: float | timedelta | None = None,
        debounce: float | timedelta | None = None,
        is_paused_upon_creation: bool = False,
        run_timeout: float | timedelta | None = None,
        site: Site | None = None,
    ) -> None:
        # `site` is where the DAG is defined; found from the call stack unless given.
        self.site: Site = site or caller_site()
        # "." and ".." pass the pattern but name folders, not a DAG: its logs would land in
        # the logs folder itself, or outside it.
        if not isinstance(dag_id, str) or not _DAG_ID.match(dag_id) or dag_id in (".", ".."):
            raise DagError(
                f"dag_id {dag_id!r} must be 1-250 letters, digits, '_', '-' or '.', "
                "and not '.' or '..'",
                file=self.site.file,
                line=self.site.line,
            )
        _positive("max_active_runs", max_active_runs, self.site)
        _positive("max_active_tasks", max_active_tasks, self.site)
        self.dag_id = dag_id
        self.description = description
        self.params: dict[str, Any] = dict(params or {})
        self.default_args: dict[str, Any] = dict(default_args or {})
        TaskOptions.build(self.default_args, {})  # name a bad default now, at the DAG's line
        self.max_active_runs = max_active_runs
        self.max_active_tasks = max_active_tasks
        #: A run still running this many seconds after it started fails, its unfinished tasks
        #: cancelled (Airflow's `dagrun_timeout`); None: no deadline.
        self.run_timeout = _run_timeout(run_timeout, self.site)
        #: Paused when the store first records it (a later change of the flag changes nothing).
        self.is_paused_upon_creation = is_paused_upon_creation
        self.tags = tuple(tags)
        self.on_success = on_success
        self.on_failure = on_failure
        #: How runs start by themselves: the schedule and the run triggers (runstarts.py).
        self.starts = _run_starts(
            self.site,
            schedule=schedule,
            timezone=timezone,
            start_date=start_date,
            end_date=end_date,
            catchup=catchup,
            run_on=run_on,
            batch_window=batch_window,
            debounce=debounce,
        )
        self.tasks: dict[str, Task] = {}
        self._auto_ids: dict[str, int] = {}
        if DAG._collector is not None:
            DAG._collector.append(self)

    # -- building -------------------------------------------------------------------------------

    @classmethod
    def current(cls) -> DAG | None:
        """The DAG whose `with` block (or `@dag` function) is being run, if any."""
        return cls._stack[-1] if cls._stack else None

    def __enter__(self) -> DAG:
        DAG._stack.append(self)
        return self

    def __exit__(self, *exc_info: object) -> None:
        DAG._stack.pop()

    def add_task(self, task: Task) -> None:
        if task.task_id in self.tasks:
            raise DuplicateTaskError(
                f"DAG {self.dag_id!r} already has a task {task.task_id!r} "
                f"(defined at {self.tasks[task.task_id].site.file}:"
                f"{self.tasks[task.task_id].site.line}); task ids must be unique",
                file=task.site.file,
                line=task.site.line,
            )
        self.tasks[task.task_id] = task

    def unique_task_id(self, base: str) -> str:
        """`base`, or `base__N` when a TaskFlow function is called more than once."""
        if base not in self.tasks:
            return base
        n = self._auto_ids.get(base, 0)
        while f"{base}__{n + 1}" in self.tasks:
            n += 1
        self._auto_ids[base] = n + 1
        return f"{base}__{n + 1}"

    def add_edge(self, upstream_id: str, downstream_id: str) -> None:
        if upstream_id == downstream_id:
            raise CycleError(
                f"task {upstream_id!r} cannot depend on itself",
                path=[upstream_id, upstream_id],
                file=self.tasks[upstream_id].site.file,
                line=self.tasks[upstream_id].site.line,
            )
        self.tasks[upstream_id].downstream_task_ids.add(downstream_id)
        self.tasks[downstream_id].upstream_task_ids.add(upstream_id)

    # -- checking -------------------------------------------------------------------------------

    def check_conf(self, conf: Mapping[str, Any]) -> None:
        """Raise ValueError, naming the field, if `conf` cannot start a run of this DAG.

        Called when a run is triggered (API, CLI, control socket, UI), so a bad value is
        refused then rather than failing a task later. Plain params take any JSON value; a
        DAG kind with typed params (Airflow's `Param`) checks them here.
        """

    def validate(self) -> None:
        """Resolve `depends_on` ids and reject cycles; raises a `DagError` with file and line."""
        for task in list(self.tasks.values()):
            task.resolve_string_dependencies()
        cycle = self._find_cycle()
        if cycle:
            raise CycleError(
                f"DAG {self.dag_id!r} has a cycle: {' -> '.join(cycle)}",
                path=cycle,
                file=self.site.file,
                line=self.site.line,
            )

    def _find_cycle(self) -> list[str] | None:
        """A cycle as a path of task ids (first repeated last), found by iterative DFS."""
        white, grey, black = 0, 1, 2
        color = dict.fromkeys(self.tasks, white)
        for root in sorted(self.tasks):
            if color[root] != white:
                continue
            path: list[str] = [root]
            stack: list[Iterator[str]] = [iter(sorted(self.tasks[root].downstream_task_ids))]
            color[root] = grey
            while stack:
                child = next(stack[-1], None)
                if child is None:
                    color[path.pop()] = black
                    stack.pop()
                elif color[child] == grey:
                    return [*path[path.index(child) :], child]
                elif color[child] == white:
                    color[child] = grey
                    path.append(child)
                    stack.append(iter(sorted(self.tasks[child].downstream_task_ids)))
        return None

    def topological_order(self) -> list[str]:
        """Task ids, each after all of its upstream tasks; of the ready ones, first defined first.

        Deterministic (edges are sets, whose order varies between processes), so every process
        and every display agrees on one order.
        """
        tasks = self.tasks
        ids = list(tasks)
        position = {task_id: index for index, task_id in enumerate(ids)}
        indegree = [len(task.upstream_task_ids) for task in tasks.values()]
        # Positions (ints compare much faster than tuples), in definition order: already a heap.
        ready = [index for index, degree in enumerate(indegree) if not degree]
        order: list[str] = []
        while ready:
            task_id = ids[heapq.heappop(ready)]
            order.append(task_id)
            for child in tasks[task_id].downstream_task_ids:
                index = position[child]
                indegree[index] -= 1
                if indegree[index] == 0:
                    heapq.heappush(ready, index)
        return order

    def priorities(self) -> dict[str, int]:
        """Each task's effective priority: its weight plus all weights downstream of it.

        Tasks on long paths start first, which shortens the run (Airflow's `downstream` rule).
        """
        return self.order_and_priorities()[1]

    def order_and_priorities(self) -> tuple[list[str], dict[str, int]]:
        """`topological_order()` and `priorities()`, the order computed once for both.

        What a run's scheduling shares (`DagPlan`), made once per DAG an engine drives: for a
        DAG of 1,000 sensors, a run's first step, so part of arming them.

        Each task's downstream set is an int used as a bitset, built from its children's in
        reverse topological order: linear in edges times machine words, where walking every
        task's descendants would take a second on a 3000-task chain. A task with nothing
        downstream (every sensor of a fan-in) has its own weight, with no sum to make.
        """
        tasks = self.tasks
        order = self.topological_order()
        bit = {task_id: 1 << index for index, task_id in enumerate(order)}
        by_weight: dict[int, int] = {}  # weight -> bitset of the tasks that have it
        for task_id in order:
            weight = tasks[task_id].options.priority_weight
            by_weight[weight] = by_weight.get(weight, 0) | bit[task_id]
        below: dict[str, int] = {}
        for task_id in reversed(order):
            reach = 0
            for child in tasks[task_id].downstream_task_ids:
                reach |= bit[child] | below[child]
            below[task_id] = reach
        priorities: dict[str, int] = {}
        for task_id, task in tasks.items():
            reach = below[task_id]
            priorities[task_id] = task.options.priority_weight + (
                sum(weight * (reach & with_it).bit_count() for weight, with_it in by_weight.items())
                if reach
                else 0
            )
        return order, priorities

    @property
    def roots(self) -> list[str]:
        return [task_id for task_id, task in self.tasks.items() if not task.upstream_task_ids]

    @property
    def leaves(self) -> list[str]:
        return [task_id for task_id, task in self.tasks.items() if not task.downstream_task_ids]

    def downstream_of(self, task_ids: Iterable[str]) -> set[str]:
        """These tasks and every task downstream of them (what a clear, a short circuit reach)."""
        return self._reach(task_ids, downstream=True)

    def upstream_of(self, task_ids: Iterable[str]) -> set[str]:
        """These tasks and every task upstream of them (where a clear looks for setups)."""
        return self._reach(task_ids, downstream=False)

    def _reach(self, task_ids: Iterable[str], *, downstream: bool) -> set[str]:
        found: set[str] = set()
        pending = list(task_ids)
        while pending:
            task_id = pending.pop()
            if task_id not in found:
                found.add(task_id)
                task = self.tasks[task_id]
                pending.extend(task.downstream_task_ids if downstream else task.upstream_task_ids)
        return found

    def __repr__(self) -> str:
        return f"<DAG {self.dag_id} ({len(self.tasks)} tasks)>"


def _refuse_keyword(name: str, known: list[str], site: Site | None) -> None:
    where = site or caller_site()
    close = difflib.get_close_matches(name, known, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else f"; known: {', '.join(known)}"
    raise DagError(f"DAG() got an unknown keyword {name!r}{hint}", file=where.file, line=where.line)


def _positive(name: str, value: int, site: Site) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise DagError(
            f"{name} must be a whole number of 1 or more, got {value!r}",
            file=site.file,
            line=site.line,
        )


def _run_timeout(value: float | timedelta | None, site: Site) -> float | None:
    try:
        result = seconds(value)
    except (TypeError, ValueError) as error:
        raise DagError(f"run_timeout: {error}", file=site.file, line=site.line) from None
    if result is not None and not 0 < result < math.inf:  # NaN fails both
        raise DagError(
            f"run_timeout must be a finite number of seconds above 0, got {value!r}",
            file=site.file,
            line=site.line,
        )
    return result


def _run_starts(site: Site, **declared: Any) -> RunStarts:
    """Parse the DAG's schedule and run triggers; a mistake is a DagError at the DAG's line."""
    try:
        return parse_run_starts(**declared)
    except DagError as error:
        error.file, error.line = error.file or site.file, error.line or site.line
        raise
    except (TypeError, ValueError) as error:
        raise DagError(str(error), file=site.file, line=site.line) from None


class DagFactory:
    """What `@dag` returns: call it to build the DAG (the loader calls it if you do not)."""

    def __init__(self, function: Callable[..., Any], dag_id: str | None, options: dict[str, Any]):
        self.function = function
        self.dag_id = dag_id or function.__name__
        self.options = options
        self.built: DAG | None = None
        #: The decorated function's first line: the DAG's site when the loader builds it.
        code = getattr(function, "__code__", None)
        self.site = Site(code.co_filename, code.co_firstlineno) if code else caller_site()
        functools.update_wrapper(self, function)

    def __call__(self, **params: Any) -> DAG:
        return self.build(params, site=caller_site())

    def build(self, params: Mapping[str, Any], *, site: Site) -> DAG:
        """Run the function in a new DAG; params are its parameters' defaults, then `params`."""
        # *args and **kwargs cannot be params: they have no single name to pass a value by.
        parameters = [
            parameter
            for parameter in inspect.signature(self.function).parameters.values()
            if parameter.kind in (parameter.POSITIONAL_OR_KEYWORD, parameter.KEYWORD_ONLY)
        ]
        names = [parameter.name for parameter in parameters]
        defaults = {
            parameter.name: parameter.default
            for parameter in parameters
            if parameter.default is not inspect.Parameter.empty
        }
        options = dict(self.options)
        merged = {**defaults, **options.pop("params", {}), **params}
        pipeline = DAG(self.dag_id, params=merged, site=site, **options)
        with pipeline:
            self.function(**{name: ParamRef(name) for name in names})
        self.built = pipeline
        return pipeline


def dag(
    function: Callable[..., Any] | None = None, *, dag_id: str | None = None, **options: Any
) -> Any:
    """Decorate a function that builds a DAG; its parameters become the DAG's params.

    ```python
    @dag(max_active_runs=1)
    def retrain(epochs: int = 10):
        evaluate(train(epochs))

    retrain()
    ```
    """
    if function is not None:
        return DagFactory(function, dag_id, options)
    return lambda fn: DagFactory(fn, dag_id, options)
