"""Import DAG files in isolation: one broken file is recorded, the others keep working."""

from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

from orchestrator.airflow_compat.imports import airflow_imports
from orchestrator.authoring.dag import DAG, DagFactory
from orchestrator.errors import DagError, DagImportError


@dataclass
class FileResult:
    """What one DAG file gave: its valid DAGs, and an error for each thing that went wrong."""

    path: str
    dags: dict[str, DAG] = field(default_factory=dict)
    errors: list[DagError] = field(default_factory=list)


def module_name_for(path: str) -> str:
    """A module name unique to the file's absolute path, so two `etl.py` files never clash."""
    absolute = os.path.abspath(path)
    digest = hashlib.sha1(absolute.encode()).hexdigest()[:12]
    stem = "".join(ch if ch.isalnum() else "_" for ch in Path(absolute).stem)
    return f"orchestrator_dags.{stem}_{digest}"


def load_dag_file(path: str | os.PathLike[str]) -> FileResult:
    """Import one file and validate every DAG it defines. Never raises for the file's faults.

    The file's folder is put on `sys.path` (helpers beside a DAG file can be imported), and
    `@dag` functions the file defines but never calls are built too.
    """
    path = os.path.abspath(path)
    result = FileResult(path)
    created: list[DAG] = []
    previous, depth = DAG._collector, len(DAG._stack)
    DAG._collector = created
    try:
        with airflow_imports():  # `import airflow...` in the file gets our compatibility layer
            module = _import(path)
            _build_uncalled_factories(module)
    except DagError as error:
        result.errors.append(_locate(error, path))
        return result
    except BaseException as error:  # a DAG file may even call sys.exit()
        if isinstance(error, KeyboardInterrupt):
            raise
        result.errors.append(import_error(path, error))
        return result
    finally:
        DAG._collector = previous
        del DAG._stack[depth:]  # a file that raised inside `with DAG(...)` leaves it open
    for pipeline in created:
        _validate_into(result, pipeline)
    return result


def _import(path: str) -> ModuleType:
    name = module_name_for(path)
    folder = os.path.dirname(path)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise DagImportError(f"cannot import {path}: not a Python file", file=path)
    module = importlib.util.module_from_spec(spec)
    # Compiled from the source every time, never from `__pycache__`: a cached .pyc is trusted
    # when the source's mtime (whole seconds) and size match, so an edit in the same second
    # that keeps the size (`retries=2` -> `retries=3`) would reload the old DAG.
    with open(path, "rb") as file:
        code = compile(file.read(), path, "exec", dont_inherit=True)
    sys.modules[name] = module  # dataclasses and typing look the module up while it runs
    try:
        exec(code, module.__dict__)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module


def _build_uncalled_factories(module: ModuleType) -> None:
    for value in list(vars(module).values()):
        if isinstance(value, DagFactory) and value.built is None:
            value.build({}, site=value.site)


def _validate_into(result: FileResult, pipeline: DAG) -> None:
    try:
        pipeline.validate()
    except DagError as error:
        result.errors.append(_locate(error, result.path))
        return
    if pipeline.dag_id in result.dags:
        result.errors.append(
            DagError(
                f"DAG id {pipeline.dag_id!r} is defined twice in this file",
                file=pipeline.site.file,
                line=pipeline.site.line,
            )
        )
        return
    result.dags[pipeline.dag_id] = pipeline


def _locate(error: DagError, path: str) -> DagError:
    """Point an error raised while importing `path` at that file's line, if it has no site."""
    if error.file is None:
        error.file = path
        error.line = _last_line_in(path, error)
    return error


def _last_line_in(path: str, error: BaseException) -> int | None:
    """The innermost line of `path` in the error's traceback: the user's line that failed."""
    line = None
    for frame in traceback.extract_tb(error.__traceback__):
        if os.path.abspath(frame.filename) == path:
            line = frame.lineno
    return line


def import_error(path: str, error: BaseException) -> DagImportError:
    """A `DagImportError` pointing at the line of `path` where `error` was raised."""
    if isinstance(error, SyntaxError) and error.filename == path:
        return DagImportError(f"{type(error).__name__}: {error.msg}", file=path, line=error.lineno)
    line = _last_line_in(path, error)
    if isinstance(error, SystemExit):
        summary = (
            f"the file called sys.exit({error.code!r}) while being imported; DAG files "
            "must not exit (put script code under `if __name__ == '__main__':`)"
        )
    else:
        summary = "".join(traceback.format_exception_only(type(error), error)).strip()
    return DagImportError(summary, file=path, line=line)
