"""Airflow's `PythonVirtualenvOperator` and `ExternalPythonOperator`: a callable in another Python.

The callable's source (not the object: nothing is pickled) is written to a script with its
op_args / op_kwargs as JSON; the other interpreter runs it and writes the return value back as
JSON, which becomes the XCom. As in Airflow, the function must be self-contained: a lambda, a
generator, a closure or a function reading module globals cannot run there, and is refused when
the DAG file loads, naming what it uses. A virtualenv is made once per set of requirements (and
Python, and `system_site_packages`) in a cache folder, and pip runs only if there are any.
"""

from __future__ import annotations

import ast
import builtins
import dis
import hashlib
import inspect
import json
import os
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import CodeType
from typing import Any

from orchestrator.airflow_compat.exceptions import AirflowException
from orchestrator.airflow_compat.operators import PythonOperator

#: Context values a callable may take by parameter name: plain strings, and the params.
_CONTEXT_KEYS = ("ds", "ds_nodash", "ts", "ts_nodash", "run_id", "params", "prev_ds", "next_ds")

_RUNNER = """
import json, sys
with open(sys.argv[1]) as _payload_file:
    _payload = json.load(_payload_file)
_result = {name}(*_payload["args"], **_payload["kwargs"])
with open(sys.argv[2], "w") as _result_file:
    json.dump(_result, _result_file)
"""


def refuse_unportable(function: Callable[..., Any], operator: str) -> None:
    """Refuse, at definition, a callable that cannot run from its source alone."""
    name = getattr(function, "__name__", "")
    if name == "<lambda>" or not inspect.isfunction(function):
        raise AirflowException(f"{operator} only supports functions for python_callable arg")
    if inspect.isgeneratorfunction(function):
        raise AirflowException("Generator function is not allowed")
    code = function.__code__
    if code.co_freevars:
        raise AirflowException(
            f"{operator}: {name}() uses {', '.join(code.co_freevars)} from an enclosing "
            "function; it runs in another interpreter from its source alone: pass the value "
            "in op_args/op_kwargs instead"
        )
    outside = sorted(set(_global_names(code)) - set(dir(builtins)) - {name})
    if outside:
        raise AirflowException(
            f"{operator}: {name}() uses the module-level name(s) {', '.join(outside)}; it runs "
            "in another interpreter from its source alone: import inside the function and "
            "pass values in op_args/op_kwargs"
        )


def _global_names(code: CodeType) -> Iterator[str]:
    for instruction in dis.get_instructions(code):
        if instruction.opname in ("LOAD_GLOBAL", "LOAD_NAME"):
            yield str(instruction.argval)
    for constant in code.co_consts:
        if isinstance(constant, CodeType):
            yield from _global_names(constant)


def function_source(function: Callable[..., Any]) -> str:
    """The function's own `def`, without its decorators (`@task.virtualenv` is not there)."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(function)))
    definition = tree.body[0]
    if not isinstance(definition, ast.FunctionDef):
        raise AirflowException(f"the source of {function.__name__}() is not a plain def")
    definition.decorator_list = []
    return ast.unparse(definition)


class _InterpreterOperator(PythonOperator):
    """Runs the callable's source with `self.python_path()`; the result comes back as JSON."""

    def __init__(self, *, python_callable: Callable[..., Any], **kwargs: Any) -> None:
        refuse_unportable(python_callable, type(self).__name__)
        kwargs.pop("serializer", None)
        kwargs.pop("use_dill", None)
        kwargs.pop("expect_airflow", None)
        kwargs.pop("expect_pendulum", None)
        kwargs.pop("string_args", None)
        kwargs.pop("skip_on_exit_code", None)
        super().__init__(python_callable=python_callable, **kwargs)

    def python_path(self) -> str:
        raise NotImplementedError

    def execute_callable(self, context: Any) -> Any:
        kwargs = dict(self.op_kwargs)
        wanted = inspect.signature(self.python_callable).parameters
        for key in _CONTEXT_KEYS:
            if key in wanted and key not in kwargs:
                kwargs[key] = dict(context[key]) if key == "params" else context[key]
        return run_in(self.python_path(), self.python_callable, list(self.op_args), kwargs)


def run_in(
    python: str, function: Callable[..., Any], args: list[Any], kwargs: dict[str, Any]
) -> Any:
    """Run `function(*args, **kwargs)` from its source with `python`; its JSON result."""
    with tempfile.TemporaryDirectory(prefix="airflow-venv-op-") as folder:
        script, payload, result = (Path(folder) / n for n in ("script.py", "in.json", "out.json"))
        script.write_text(function_source(function) + _RUNNER.format(name=function.__name__))
        try:
            payload.write_text(json.dumps({"args": args, "kwargs": kwargs}))
        except TypeError as error:
            raise AirflowException(f"op_args/op_kwargs must be JSON: {error}") from None
        code = _run_echoing([python, str(script), str(payload), str(result)])
        if code != 0:
            raise AirflowException(f"Process returned non-zero exit status {code}")
        return json.loads(result.read_text()) if result.exists() else None


def _run_echoing(command: Sequence[str]) -> int:
    """Run `command`, echoing its output and stderr to the task's log."""
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace"
    ) as process:
        assert process.stdout is not None
        for line in process.stdout:
            print(line, end="", flush=True)
        return process.wait()


class ExternalPythonOperator(_InterpreterOperator):
    """The callable runs in an existing interpreter, `python` (a path to its executable)."""

    def __init__(self, *, python: str, **kwargs: Any) -> None:
        self.python = python
        super().__init__(**kwargs)

    def python_path(self) -> str:
        if not os.path.exists(self.python):
            raise AirflowException(f"Python Path '{self.python}' must exists")
        return self.python


class PythonVirtualenvOperator(_InterpreterOperator):
    """The callable runs in a virtualenv with `requirements`, made once and kept in a cache."""

    def __init__(
        self,
        *,
        requirements: str | Sequence[str] | None = None,
        python_version: str | None = None,
        system_site_packages: bool = True,
        pip_install_options: Sequence[str] | None = None,
        venv_cache_path: str | os.PathLike[str] | None = None,
        **kwargs: Any,
    ) -> None:
        given = [requirements] if isinstance(requirements, str) else list(requirements or [])
        self.requirements = sorted(line.strip() for line in given if line.strip())
        self.python_version = python_version
        self.system_site_packages = system_site_packages
        self.pip_install_options = list(pip_install_options or [])
        self.venv_cache_path = venv_cache_path
        kwargs.pop("index_urls", None)
        super().__init__(**kwargs)

    def python_path(self) -> str:
        folder = self._cache_folder() / self._key()
        python = folder / "bin" / "python"
        if not python.exists():
            self._create(folder)
        return str(python)

    def _cache_folder(self) -> Path:
        if self.venv_cache_path is not None:
            return Path(self.venv_cache_path)
        base = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
        return Path(base) / "orchestrator" / "airflow-venvs"

    def _key(self) -> str:
        wanted = [self.python_version, self.system_site_packages, *self.requirements]
        return "venv-" + hashlib.sha256(json.dumps(wanted).encode()).hexdigest()[:16]

    def _create(self, folder: Path) -> None:
        """Make the venv beside its final name, then rename: a half-made one is never used."""
        folder.parent.mkdir(parents=True, exist_ok=True)
        building = Path(tempfile.mkdtemp(prefix=f"{folder.name}-", dir=folder.parent))
        base = f"python{self.python_version}" if self.python_version else sys.executable
        command = [base, "-m", "venv", str(building)]
        if self.system_site_packages:
            command.append("--system-site-packages")
        if not self.requirements:
            command.append("--without-pip")  # nothing to install: no need for pip (much faster)
        if _run_echoing(command) != 0:
            raise AirflowException(f"Could not create a virtualenv with {base}")
        if self.requirements:
            pip = [str(building / "bin" / "python"), "-m", "pip", "install"]
            if _run_echoing([*pip, *self.pip_install_options, *self.requirements]) != 0:
                raise AirflowException(f"pip install {' '.join(self.requirements)} failed")
        try:
            building.rename(folder)
        except OSError:  # another try made it first: use theirs
            if not (folder / "bin" / "python").exists():
                raise


__all__ = ("ExternalPythonOperator", "PythonVirtualenvOperator")
