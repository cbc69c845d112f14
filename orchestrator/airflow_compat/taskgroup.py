"""Airflow's `TaskGroup` (task ids `group.task`) and `Label` (a name on an edge).

A group is a naming scope and a set of tasks: `group >> task` links its leaves (tasks with no
downstream inside the group, teardowns left out) to the task, `task >> group` links the task
to its roots.
Labels only name an edge; the edge itself is the native one.
"""

from __future__ import annotations

from typing import Any, ClassVar

from orchestrator.authoring.dag import DAG as NativeDAG
from orchestrator.authoring.references import Output
from orchestrator.authoring.tasks import Task


class TaskGroup:
    """`with TaskGroup("extract") as group:` — the tasks made inside get ids `extract.<id>`."""

    _stack: ClassVar[list[TaskGroup]] = []

    def __init__(
        self,
        group_id: str,
        prefix_group_id: bool = True,
        parent_group: TaskGroup | None = None,
        dag: NativeDAG | None = None,
        default_args: dict[str, Any] | None = None,
        tooltip: str = "",
        **_: Any,
    ) -> None:
        parent = parent_group or current_group()
        self.parent_group = parent
        owner = dag or (parent.dag if parent else NativeDAG.current())
        if owner is None:
            raise ValueError(f"TaskGroup {group_id!r} was created outside a DAG")
        self.dag: NativeDAG = owner
        inherited: dict[str, Any] = parent.default_args if parent else {}
        self.group_id = parent.child_id(group_id) if parent else group_id
        self.prefix_group_id = prefix_group_id
        self.default_args: dict[str, Any] = {**inherited, **(default_args or {})}
        self.tooltip = tooltip
        self.tasks: list[Task] = []

    def child_id(self, name: str) -> str:
        return f"{self.group_id}.{name}" if self.prefix_group_id else name

    def add(self, task: Task) -> None:
        self.tasks.append(task)
        if self.parent_group is not None:
            self.parent_group.add(task)

    def __enter__(self) -> TaskGroup:
        TaskGroup._stack.append(self)
        return self

    def __exit__(self, *exc_info: object) -> None:
        TaskGroup._stack.pop()

    @property
    def roots(self) -> list[Task]:
        ids = {task.task_id for task in self.tasks}
        return [task for task in self.tasks if not task.upstream_task_ids & ids]

    @property
    def leaves(self) -> list[Task]:
        """Its tasks with no downstream inside it; a teardown among them stands for the work
        before it, as in Airflow: `group >> task` leaves teardowns out, so they run beside
        what follows and their failure does not hold it up."""
        ids = {task.task_id for task in self.tasks}
        leaves: dict[Task, None] = {}
        for task in self.tasks:
            if not task.downstream_task_ids & ids:
                leaves.update(
                    dict.fromkeys(_work_before(task, ids) if task.is_teardown else [task])
                )
        return list(leaves)

    def __rshift__(self, other: Any) -> Any:
        if isinstance(other, Label):
            return other.after(self.leaves)
        for task in self.leaves:
            task.set_downstream(flatten(other, side="roots"))
        return other

    def __lshift__(self, other: Any) -> Any:
        for task in self.roots:
            task.set_upstream(flatten(other, side="leaves"))
        return other

    def __rrshift__(self, other: Any) -> TaskGroup:
        self.__lshift__(other)
        return self

    def __rlshift__(self, other: Any) -> TaskGroup:
        self.__rshift__(other)
        return self

    def __repr__(self) -> str:
        return f"<TaskGroup {self.group_id}>"


def current_group() -> TaskGroup | None:
    return TaskGroup._stack[-1] if TaskGroup._stack else None


class Label:
    """`a >> Label("when valid") >> b`: the edge a >> b, with a name shown on it."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.upstream: list[Task] = []

    def after(self, tasks: list[Task]) -> Label:
        labelled = Label(self.label)
        labelled.upstream = list(tasks)
        return labelled

    def __rrshift__(self, other: Any) -> Label:
        return self.after(flatten(other, side="leaves"))

    def __rshift__(self, other: Any) -> Any:
        for task in self.upstream:
            task.set_downstream(flatten(other, side="roots"))
        return other


def _work_before(teardown: Task, ids: set[str]) -> list[Task]:
    """The work tasks inside the group just before a teardown (through other teardowns; the
    edge from its setup does not count)."""
    work: list[Task] = []
    for upstream_id in sorted(teardown.upstream_task_ids & ids):
        upstream = teardown.dag.tasks[upstream_id]
        if upstream.is_teardown:
            work.extend(_work_before(upstream, ids))
        elif not upstream.is_setup:
            work.append(upstream)
    return work


def flatten(item: Any, *, side: str) -> list[Task]:
    """The tasks an item of a dependency stands for (a group: its roots or its leaves)."""
    if isinstance(item, Task):
        return [item]
    if isinstance(item, Output):
        return [item.task]
    if isinstance(item, TaskGroup):
        return item.roots if side == "roots" else item.leaves
    if isinstance(item, list | tuple | set):
        return [task for element in item for task in flatten(element, side=side)]
    raise TypeError(f"cannot make a dependency on {item!r}: expected a task, group or XComArg")
