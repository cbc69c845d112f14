"""XComs: a task's return value and the keys it pushed, stored as the native task result.

A task that pushes no other key stores its return value as is (so native tools and the API
show it plainly); one that does stores `{"__airflow_xcom__": {key: value, ...}}`. `XComArg`
(`operator.output`, a TaskFlow call's result) is a native `Output`: passing it to a task makes
the edge, and it is resolved (to None when the task left no value, as Airflow's pull does)
just before the task runs. `RunXComs` hands a task every result of its run so far, for
`ti.xcom_pull(task_ids=...)`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from orchestrator.authoring.context import TaskContext
from orchestrator.authoring.references import Output, Ref

if TYPE_CHECKING:
    from orchestrator.authoring.tasks import Task

RETURN_VALUE = "return_value"
_WRAPPER = "__airflow_xcom__"


def stored_value(returned: Any, pushed: Mapping[str, Any]) -> Any:
    """What a task stores as its result: the return value, or every key it pushed."""
    if not pushed:
        return returned
    values = dict(pushed)
    if returned is not None:
        values[RETURN_VALUE] = returned
    return {_WRAPPER: values}


def value_for_key(stored: Any, key: str | None) -> Any:
    """One XCom of a stored result: `return_value`, a pushed key, or a multiple_outputs key."""
    key = key or RETURN_VALUE
    if isinstance(stored, dict) and _WRAPPER in stored:
        values = stored[_WRAPPER]
        if key in values:
            return values[key]
        stored = values.get(RETURN_VALUE)
    if key == RETURN_VALUE:
        return stored
    if isinstance(stored, dict):
        return stored.get(key)  # multiple_outputs: each dict key is an XCom
    return None


def is_stored_wrapper(value: Any) -> bool:
    return isinstance(value, dict) and _WRAPPER in value


class XComArg(Output):
    """Another task's XCom (by default its return value), as an argument of this one."""

    own_attributes = (*Output.own_attributes, "key")

    def __init__(self, operator: Task, key: str = RETURN_VALUE) -> None:
        super().__init__(operator)
        self.key = key

    @property
    def operator(self) -> Task:
        return self.task

    def __getitem__(self, key: str | int) -> XComArg:
        return XComArg(self.task, str(key))

    def as_setup(self) -> XComArg:
        """`@task` call`.as_setup()`: its operator becomes a setup (see `BaseOperator`)."""
        self.task.as_setup()
        return self

    def as_teardown(
        self, setups: Any = None, on_failure_fail_dagrun: bool | None = None
    ) -> XComArg:
        """`@task` call`.as_teardown(setups=...)`: its operator becomes a teardown."""
        self.task.as_teardown(setups, on_failure_fail_dagrun)
        return self

    def __enter__(self) -> Any:
        """`with teardown_call.as_teardown(setups=...):` as on its operator."""
        return self.task.__enter__()

    def __exit__(self, *exc_info: object) -> None:
        self.task.__exit__(*exc_info)

    def resolve(self, results: Mapping[str, Any], context: TaskContext) -> Any:
        if self.task.task_id not in results:
            return None
        stored = results[self.task.task_id]
        if self.task.is_mapped and isinstance(stored, list):
            return [value_for_key(item, self.key) for item in stored]
        return value_for_key(stored, self.key)

    def __iter__(self) -> Any:
        raise TypeError("an XComArg is known only at run time: it cannot be iterated in a DAG file")

    def __repr__(self) -> str:
        return f"XComArg({self.task.task_id!r}, key={self.key!r})"


class RunXComs(Ref):
    """Every result of the run so far, by task id: what `xcom_pull` reads."""

    def resolve(self, results: Mapping[str, Any], context: TaskContext) -> Any:
        return {task_id: results[task_id] for task_id in results}


__all__ = ("XComArg",)
