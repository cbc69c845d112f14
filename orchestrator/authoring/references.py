"""References: task inputs whose values exist only at run time (`Output`, `ParamRef`).

Passing one task's `Output` into another both makes the edge (the task links its input
references) and, at run time, is replaced by the upstream task's result; a `ParamRef` reads the
run's params. The values are nested in plain lists, tuples and dicts, so `iter_refs` and
`resolve_refs` walk them wherever a task runs.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import fields
from typing import TYPE_CHECKING, Any, ClassVar

from orchestrator.authoring.context import TaskContext

if TYPE_CHECKING:
    from orchestrator.authoring.tasks import Dependable, Task


class Ref:
    """A value known only at run time: another task's result, or a DAG param."""

    def upstream_task_ids(self) -> set[str]:
        return set()

    def resolve(self, results: Mapping[str, Any], context: TaskContext) -> Any:
        raise NotImplementedError


class Output(Ref):
    """The result of `task`, or an item inside it (`output["key"]`), usable as another's input."""

    #: What an output holds itself; any other name set on it must be an option of its task.
    own_attributes: ClassVar[tuple[str, ...]] = ("task", "path")

    def __init__(self, task: Task, path: tuple[str | int, ...] = ()) -> None:
        self.task = task
        self.path = path

    def __setattr__(self, name: str, value: Any) -> None:
        """`output.trigger_rule = ...` sets the option on the task that makes the output."""
        if name in self.own_attributes:
            super().__setattr__(name, value)
        elif name in {field.name for field in fields(self.task.options)}:
            setattr(self.task, name, value)
        else:
            raise AttributeError(
                f"cannot set {name!r} on the output of task {self.task.task_id!r}: "
                "only task options can be set there"
            )

    def __getitem__(self, key: str | int) -> Output:
        return Output(self.task, (*self.path, key))

    def upstream_task_ids(self) -> set[str]:
        return {self.task.task_id}

    def resolve(self, results: Mapping[str, Any], context: TaskContext) -> Any:
        # An upstream without a result (skipped or failed before a join with all_done,
        # none_failed, one_success; or not finished yet under one_success) gives None, its
        # items too, as Airflow's XComArg does: the join decides what a missing value means.
        if self.task.task_id not in results:
            return None
        value = results[self.task.task_id]
        for key in self.path:
            value = value[key]
        return value

    def __rshift__(self, other: Dependable) -> Dependable:
        return self.task.__rshift__(other)

    def __lshift__(self, other: Dependable) -> Dependable:
        return self.task.__lshift__(other)

    def __rrshift__(self, other: Dependable) -> Output:
        self.task.__rrshift__(other)
        return self

    def __rlshift__(self, other: Dependable) -> Output:
        self.task.__rlshift__(other)
        return self

    def __repr__(self) -> str:
        keys = "".join(f"[{key!r}]" for key in self.path)
        return f"Output({self.task.task_id!r}){keys}"


class ParamRef(Ref):
    """A DAG parameter, read from the run's params when the task runs."""

    def __init__(self, name: str) -> None:
        self.name = name

    def resolve(self, results: Mapping[str, Any], context: TaskContext) -> Any:
        return context.params[self.name]

    def __repr__(self) -> str:
        return f"ParamRef({self.name!r})"


def iter_refs(value: Any) -> Iterator[Ref]:
    """Every `Ref` inside a value made of lists, tuples and dicts."""
    if isinstance(value, Ref):
        yield value
    elif isinstance(value, list | tuple):
        for item in value:
            yield from iter_refs(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from iter_refs(item)


# Leaves that cannot hold a `Ref`, taken as they are without a call: 100,000 sensors arming at
# once resolve a few plain strings and numbers each, and the calls were most of the cost.
PLAIN_LEAVES = frozenset({str, int, float, bool, type(None)})


def surely_plain(value: Any) -> bool:
    """True when `value` surely holds no `Ref`: a plain leaf, or dicts, lists and tuples of plain
    leaves two levels deep at most (a sensor's `{"kwargs": fields}`). Then `resolve_refs` would
    only copy it. False says nothing (a deeper or other value): resolve it.

    The leaves are checked in C: 100,000 sensors arming at once are nearly all of this shape.
    """
    items = _items(value)
    if items is None:
        return type(value) in PLAIN_LEAVES
    for item in items:
        if type(item) not in PLAIN_LEAVES:
            inner = _items(item)
            if inner is None or not PLAIN_LEAVES.issuperset(map(type, inner)):
                return False
    return True


def _items(value: Any) -> Iterable[Any] | None:
    """The items of a dict (its values), list or tuple of exactly those types; else None."""
    kind = type(value)
    if kind is dict:
        return value.values()  # type: ignore[no-any-return]
    return value if kind is list or kind is tuple else None


def resolve_refs(value: Any, results: Mapping[str, Any], context: TaskContext) -> Any:
    """`value` with every `Ref` in it replaced by what it stands for."""
    if isinstance(value, Ref):
        return value.resolve(results, context)
    if isinstance(value, list | tuple):
        items = [
            item if type(item) in PLAIN_LEAVES else resolve_refs(item, results, context)
            for item in value
        ]
        return items if type(value) is list else type(value)(items)
    if isinstance(value, dict):
        return {
            key: item if type(item) in PLAIN_LEAVES else resolve_refs(item, results, context)
            for key, item in value.items()
        }
    return value
