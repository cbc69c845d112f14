"""Airflow's core operators: Empty, Python (with branch and short-circuit forms), Bash, LatestOnly.

Branching is native: a branch operator's result is the list of direct downstream task ids to
follow, and the engine skips the others (a chosen task group stands for its roots).
"""

from __future__ import annotations

import inspect
import os
import subprocess
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from orchestrator.airflow_compat.baseoperator import BaseOperator
from orchestrator.airflow_compat.exceptions import AirflowException, AirflowSkipException


class EmptyOperator(BaseOperator):
    """Does nothing; it runs in the engine, without a worker process."""

    ui_color = "#e8f7e4"
    _in_engine = True

    def execute(self, context: Any) -> None:
        return None


DummyOperator = EmptyOperator


def call_with_context(
    function: Callable[..., Any], args: Sequence[Any], kwargs: Mapping[str, Any], context: Any
) -> Any:
    """Call as Airflow does: context keys go to parameters of that name, or all to `**kwargs`."""
    merged = {**context, **kwargs}
    parameters = inspect.signature(function).parameters
    if any(p.kind is p.VAR_KEYWORD for p in parameters.values()):
        return function(*args, **merged)
    positional = [
        name
        for name, p in parameters.items()
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ][: len(args)]
    chosen = {
        name: merged[name]
        for name, p in parameters.items()
        if name in merged and name not in positional and p.kind is not p.POSITIONAL_ONLY
    }
    return function(*args, **chosen)


class PythonOperator(BaseOperator):
    """Call `python_callable(*op_args, **op_kwargs)`, with context keys it asks for by name."""

    template_fields: Sequence[str] = ("templates_dict", "op_args", "op_kwargs")
    template_ext: Sequence[str] = ()
    ui_color = "#ffefeb"

    def __init__(
        self,
        *,
        python_callable: Callable[..., Any],
        op_args: Sequence[Any] | None = None,
        op_kwargs: Mapping[str, Any] | None = None,
        templates_dict: dict[str, Any] | None = None,
        templates_exts: Sequence[str] | None = None,
        **kwargs: Any,
    ) -> None:
        if not callable(python_callable):
            raise AirflowException("`python_callable` param must be callable")
        self.python_callable = python_callable
        self.op_args = list(op_args or [])
        self.op_kwargs = dict(op_kwargs or {})
        self.templates_dict = templates_dict
        if templates_exts:
            self.template_ext = tuple(templates_exts)
        super().__init__(**kwargs)

    def execute(self, context: Any) -> Any:
        context["templates_dict"] = self.templates_dict
        return self.execute_callable(context)

    def execute_callable(self, context: Any) -> Any:
        return call_with_context(self.python_callable, self.op_args, self.op_kwargs, context)


class _Branching:
    """Mixed into operators whose result says which direct downstream tasks run."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.is_branch = True

    def stored_result(self, returned: Any, context: Any) -> Any:
        return self.choose(returned)  # type: ignore[attr-defined]

    def chosen_ids(self, returned: Any) -> list[str]:
        """The downstream task ids a branch's return value names (groups: their roots)."""
        names = [] if returned is None else [returned] if isinstance(returned, str) else returned
        downstream = self.downstream_task_ids  # type: ignore[attr-defined]
        chosen: list[str] = []
        for name in names:
            if name in downstream:
                chosen.append(name)
            else:
                chosen.extend(t for t in downstream if t.startswith(f"{name}."))
        return sorted(set(chosen))


class BranchPythonOperator(_Branching, PythonOperator):
    """`python_callable` returns the task id (or ids) to follow; the others are skipped."""

    def choose(self, returned: Any) -> list[str]:
        return self.chosen_ids(returned)


class BranchMixIn(_Branching):
    def choose(self, returned: Any) -> list[str]:
        return self.chosen_ids(returned)


class ShortCircuitOperator(_Branching, PythonOperator):
    """A falsy result skips the tasks downstream; a truthy one lets them run.

    With `ignore_downstream_trigger_rules=True` (the default) every task below is skipped,
    whatever its trigger rule; with False only the direct downstream tasks are, and the rest
    follow their rules. The engine's `skips_whole_downstream` does it (`@task.branch` has it).
    """

    def __init__(self, *, ignore_downstream_trigger_rules: bool = True, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.skips_whole_downstream = ignore_downstream_trigger_rules

    @property
    def ignore_downstream_trigger_rules(self) -> bool:
        return self.skips_whole_downstream

    @ignore_downstream_trigger_rules.setter
    def ignore_downstream_trigger_rules(self, value: bool) -> None:
        self.skips_whole_downstream = value

    def choose(self, returned: Any) -> list[str]:
        print(f"Condition result is {returned!r}")
        return sorted(self.downstream_task_ids) if returned else []


class LatestOnlyOperator(_Branching, BaseOperator):
    """Skips its downstream tasks unless this run is the latest scheduled interval."""

    def execute(self, context: Any) -> Any:
        dag_run = context["dag_run"]
        if dag_run.external_trigger:
            return True
        schedule = self.dag.starts.schedule
        left = context["data_interval_end"].timestamp()
        right = schedule.next_due(left) if schedule is not None else float("inf")
        import time

        return left <= time.time() < right

    def choose(self, returned: Any) -> list[str]:
        return sorted(self.downstream_task_ids) if returned else []


class BashOperator(BaseOperator):
    """Run `bash_command` with bash; its last line of output is the XCom."""

    template_fields: Sequence[str] = ("bash_command", "env", "cwd")
    template_ext: Sequence[str] = (".sh", ".bash")
    ui_color = "#f0ede4"

    def __init__(
        self,
        *,
        bash_command: str,
        env: dict[str, str] | None = None,
        append_env: bool = False,
        output_encoding: str = "utf-8",
        skip_on_exit_code: int | Sequence[int] | None = 99,
        cwd: str | None = None,
        output_processor: Callable[[str], Any] = lambda output: output,
        **kwargs: Any,
    ) -> None:
        self.bash_command = bash_command
        self.env = env
        self.append_env = append_env
        self.output_encoding = output_encoding
        codes = [] if skip_on_exit_code is None else skip_on_exit_code
        self.skip_on_exit_code = [codes] if isinstance(codes, int) else list(codes)
        self.cwd = cwd
        self.output_processor = output_processor
        super().__init__(**kwargs)

    def execute(self, context: Any) -> Any:
        if self.cwd is not None and not os.path.isdir(self.cwd):
            raise AirflowException(f"Can not find the cwd: {self.cwd}")
        code, last = run_bash(self.bash_command, self._environment(context), self.cwd)
        if code in self.skip_on_exit_code:
            raise AirflowSkipException(f"Bash command returned exit code {code}. Skipping.")
        if code != 0:
            raise AirflowException(
                f"Bash command failed. The command returned a non-zero exit code {code}."
            )
        return self.output_processor(last)

    def _environment(self, context: Any) -> dict[str, str]:
        env = dict(self.env) if self.env is not None else dict(os.environ)
        if self.env is not None and self.append_env:
            env = {**os.environ, **env}
        ti = context["ti"]
        env.update(
            AIRFLOW_CTX_DAG_ID=ti.dag_id,
            AIRFLOW_CTX_TASK_ID=ti.task_id,
            AIRFLOW_CTX_DAG_RUN_ID=ti.run_id,
            AIRFLOW_CTX_TRY_NUMBER=str(ti.try_number),
            AIRFLOW_CTX_LOGICAL_DATE=context["ts"],
        )
        return env


def run_bash(command: str, env: dict[str, str], cwd: str | None) -> tuple[int, str]:
    """Run `command` with bash, echoing its output and stderr to the log: (exit code, last line)."""
    last = ""
    with subprocess.Popen(
        ["bash", "-c", command],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
        cwd=cwd,
        text=True,
        errors="replace",
    ) as process:
        assert process.stdout is not None
        for line in process.stdout:
            print(line, end="", flush=True)
            last = line.rstrip("\n")
        code = process.wait()
    return code, last


__all__ = (
    "BashOperator",
    "BranchPythonOperator",
    "DummyOperator",
    "EmptyOperator",
    "LatestOnlyOperator",
    "PythonOperator",
    "ShortCircuitOperator",
)
