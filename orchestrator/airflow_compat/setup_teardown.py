"""A setup or teardown task as a context manager, as Airflow's docs write it.

    with delete_cluster.as_teardown(setups=create_cluster):
        [RunQueryOne(), RunQueryTwo()] >> DoSomeOtherStuff()

The tasks created inside are the work between the setup and the teardown: once the block
ends, the teardown's setups run before the roots of that work (its tasks with no upstream)
and the teardown after its leaves (its tasks with no downstream). `with create_cluster:` on a
setup does the same with the setup's teardowns; `with ... as scope: scope.add_task(task)`
adds a task created before the block. Only the innermost block takes a task, as in Airflow.
"""

from __future__ import annotations

from typing import Any, ClassVar

from orchestrator.airflow_compat.exceptions import AirflowException
from orchestrator.airflow_compat.taskgroup import flatten
from orchestrator.authoring.tasks import Task


class SetupTeardownScope:
    """The `with` block of a setup or teardown: the work tasks created (or added) inside."""

    _open: ClassVar[list[SetupTeardownScope]] = []

    def __init__(self, task: Task) -> None:
        if not (task.is_setup or task.is_teardown):
            raise AirflowException(
                f"only setup and teardown tasks can be used as context managers; mark "
                f"{task.task_id!r} with .as_setup() or .as_teardown(setups=...) first"
            )
        self.task = task
        self.work: list[Task] = []

    @classmethod
    def note(cls, task: Task) -> None:
        """A task was created: the innermost open block (if any) takes it as its work."""
        if cls._open:
            cls._open[-1].work.append(task)

    def add_task(self, task: Any) -> None:
        """Take a task created before the block (an operator or a TaskFlow call's result)."""
        self.work.extend(flatten(task, side="leaves"))

    def __enter__(self) -> SetupTeardownScope:
        SetupTeardownScope._open.append(self)
        return self

    def __exit__(self, error_type: object, *_: object) -> None:
        SetupTeardownScope._open.remove(self)
        if error_type is None:
            self._wire()

    def _wire(self) -> None:
        work = [task for task in self.work if not (task.is_setup or task.is_teardown)]
        if not work:
            return
        setups, teardowns = self._around()
        roots = [task for task in work if not task.upstream_task_ids] or work[:1]
        leaves = [task for task in work if not task.downstream_task_ids] or work[-1:]
        for setup in setups:
            setup.set_downstream(roots)
        for teardown in teardowns:
            teardown.set_upstream(leaves)

    def _around(self) -> tuple[list[Task], list[Task]]:
        """The setups and teardowns around the work: this task, and its teardowns (a setup's)
        or its setups (a teardown's)."""
        task, tasks = self.task, self.task.dag.tasks
        if task.is_setup:
            downstream = [tasks[t] for t in sorted(task.downstream_task_ids)]
            return [task], [t for t in downstream if t.is_teardown]
        upstream = [tasks[t] for t in sorted(task.upstream_task_ids)]
        return [t for t in upstream if t.is_setup], [task]
