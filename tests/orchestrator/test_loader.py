"""Importing DAG files one by one: every fault becomes an error with file and line."""

from __future__ import annotations

import os
import sys
import textwrap
from pathlib import Path

import pytest

from orchestrator.authoring.dag import DAG
from orchestrator.errors import CycleError, DagError, DagImportError, UnknownTaskError
from orchestrator.loading.importer import load_dag_file, module_name_for


def _write(path: Path, source: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(source).lstrip("\n"), encoding="utf-8")
    return path


def _only_error(path: Path) -> DagError:
    result = load_dag_file(path)
    assert result.dags == {}
    assert len(result.errors) == 1, result.errors
    error = result.errors[0]
    assert error.file == str(path)
    return error


def test_a_good_file_gives_its_dags(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "etl.py",
        """
        from orchestrator.authoring.dag import DAG
        from orchestrator.authoring.taskflow import task

        @task
        def extract():
            return [1, 2]

        @task
        def total(values):
            return sum(values)

        with DAG("etl"):
            total(extract())
        """,
    )
    result = load_dag_file(path)
    assert result.errors == []
    assert result.path == str(path)
    assert list(result.dags) == ["etl"]
    assert result.dags["etl"].topological_order() == ["extract", "total"]
    assert result.dags["etl"].site.file == str(path)
    assert result.dags["etl"].site.line == 12


def test_two_dags_in_one_file(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "two.py",
        """
        from orchestrator.authoring.dag import DAG
        from orchestrator.authoring.operators import Shell

        with DAG("first"):
            Shell("true", task_id="a")

        with DAG("second"):
            Shell("true", task_id="a")
        """,
    )
    result = load_dag_file(path)
    assert result.errors == []
    assert sorted(result.dags) == ["first", "second"]


def test_the_same_dag_id_twice_in_one_file_keeps_the_first(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "twice.py",
        """
        from orchestrator.authoring.dag import DAG

        with DAG("same") as first:
            pass

        with DAG("same"):
            pass
        """,
    )
    result = load_dag_file(path)
    assert list(result.dags) == ["same"]
    assert [(error.line, error.message) for error in result.errors] == [
        (6, "DAG id 'same' is defined twice in this file")
    ]


def test_a_syntax_error_points_at_its_line(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "broken.py", "from orchestrator.authoring.dag import DAG\n\nwith DAG('x')\n"
    )
    error = _only_error(path)
    assert isinstance(error, DagImportError)
    assert error.line == 3
    assert error.message.startswith("SyntaxError: ")
    assert str(error).startswith(f"{path}:3: SyntaxError")


def test_an_import_error_points_at_the_failing_import(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "missing.py",
        """
        import os
        from orchestrator.authoring.dag import DAG
        import no_such_module_for_orchestrator_tests
        """,
    )
    error = _only_error(path)
    assert isinstance(error, DagImportError)
    assert error.line == 3
    assert "ModuleNotFoundError" in error.message
    assert "no_such_module_for_orchestrator_tests" in error.message


def test_an_exception_inside_a_dag_block_points_at_its_line(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "raises.py",
        """
        from orchestrator.authoring.dag import DAG
        from orchestrator.authoring.operators import Shell

        with DAG("raises"):
            Shell("true", task_id="a")
            config = {"rows": 1}
            limit = config["limit"]
        """,
    )
    error = _only_error(path)
    assert error.line == 7
    assert error.message == "KeyError: 'limit'"
    assert DAG.current() is None  # the half-built DAG's block was closed for us


def test_a_bad_task_option_points_at_the_task(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "options.py",
        """
        from orchestrator.authoring.dag import DAG
        from orchestrator.authoring.operators import Shell

        with DAG("options"):
            Shell("true", task_id="a", retrys=2)
        """,
    )
    error = _only_error(path)
    assert error.line == 5
    assert "unknown task option 'retrys'" in error.message


def test_a_dag_error_raised_while_importing_gets_the_line(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "bad_id.py",
        """
        from orchestrator.authoring.dag import DAG
        from orchestrator.authoring.operators import BaseOperator

        class Noop(BaseOperator):
            def __init__(self, **options):
                super().__init__(**options)

        with DAG("bad_id"):
            Noop(task_id="a/b")
        """,
    )
    error = _only_error(path)
    assert error.line == 9  # the line creating the task, not the operator's own __init__
    assert "may not contain '/'" in error.message


def test_a_dag_error_raised_by_the_file_itself_gets_its_line(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "own_error.py",
        """
        from orchestrator.errors import DagError

        raise DagError("this pipeline is disabled")
        """,
    )
    error = _only_error(path)
    assert (error.line, error.message) == (3, "this pipeline is disabled")


def test_a_path_that_is_not_python_is_an_error(tmp_path: Path) -> None:
    path = _write(tmp_path / "notes.txt", "hello\n")
    error = _only_error(path)
    assert "not a Python file" in error.message


def test_a_file_calling_sys_exit_is_an_error_not_an_exit(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "exits.py",
        """
        import sys
        from orchestrator.authoring.dag import DAG

        with DAG("never"):
            pass
        sys.exit(3)
        """,
    )
    error = _only_error(path)  # the DAG made before the exit is not kept either
    assert error.line == 6
    assert "called sys.exit(3)" in error.message
    assert "if __name__ == '__main__'" in error.message


def test_a_keyboard_interrupt_is_not_swallowed(tmp_path: Path) -> None:
    path = _write(tmp_path / "interrupted.py", "raise KeyboardInterrupt\n")
    with pytest.raises(KeyboardInterrupt):
        load_dag_file(path)


def test_a_cycle_is_reported_with_its_path_and_the_dag_line(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "cycle.py",
        """
        from orchestrator.authoring.dag import DAG
        from orchestrator.authoring.operators import Shell

        with DAG("cycle"):
            a = Shell("true", task_id="a")
            b = Shell("true", task_id="b")
            a >> b >> a
        """,
    )
    error = _only_error(path)
    assert isinstance(error, CycleError)
    assert error.path == ["a", "b", "a"]
    assert error.line == 4


def test_an_unknown_depends_on_id_points_at_the_task(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "unknown.py",
        """
        from orchestrator.authoring.dag import DAG
        from orchestrator.authoring.operators import Shell

        with DAG("unknown"):
            Shell("true", task_id="a")
            Shell("true", task_id="b", depends_on=["c"])
        """,
    )
    error = _only_error(path)
    assert isinstance(error, UnknownTaskError)
    assert error.line == 6


def test_a_broken_dag_does_not_hide_a_good_one_in_the_same_file(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "mixed.py",
        """
        from orchestrator.authoring.dag import DAG
        from orchestrator.authoring.operators import Shell

        with DAG("good"):
            Shell("true", task_id="a")

        with DAG("bad"):
            Shell("true", task_id="a", depends_on=["zzz"])
        """,
    )
    result = load_dag_file(path)
    assert list(result.dags) == ["good"]
    assert [error.line for error in result.errors] == [8]


def test_uncalled_dag_factories_are_built_at_their_definition(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "factories.py",
        """
        from orchestrator.authoring.dag import dag
        from orchestrator.authoring.taskflow import task

        @task
        def step(n):
            return n

        @dag
        def built_by_loader(n: int = 3):
            step(n)

        @dag(dag_id="cyclic")
        def cyclic():
            first = step(1)
            second = step(first)
            first.task.set_upstream(second)
        """,
    )
    result = load_dag_file(path)
    assert list(result.dags) == ["built_by_loader"]
    assert result.dags["built_by_loader"].params == {"n": 3}
    assert result.dags["built_by_loader"].site.line == 8  # the decorator's line
    [error] = result.errors
    assert isinstance(error, CycleError)
    assert (error.file, error.line) == (str(path), 12)


def test_a_factory_called_in_the_file_is_not_built_twice(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "called.py",
        """
        from orchestrator.authoring.dag import dag

        @dag
        def once(day: str = "monday"):
            pass

        once(day="friday")
        """,
    )
    result = load_dag_file(path)
    assert result.errors == []
    assert result.dags["once"].params == {"day": "friday"}
    assert result.dags["once"].site.line == 7  # the call's line


def test_a_helper_module_beside_the_dag_file_can_be_imported(tmp_path: Path) -> None:
    _write(tmp_path / "dags" / "loader_test_helpers.py", "NAME = 'from_helper'\n")
    path = _write(
        tmp_path / "dags" / "uses_helper.py",
        """
        from orchestrator.authoring.dag import DAG
        from loader_test_helpers import NAME

        with DAG(NAME):
            pass
        """,
    )
    try:
        result = load_dag_file(path)
    finally:
        sys.modules.pop("loader_test_helpers", None)
    assert result.errors == []
    assert list(result.dags) == ["from_helper"]


def test_an_error_inside_a_helper_points_at_the_import_line(tmp_path: Path) -> None:
    _write(tmp_path / "dags" / "loader_broken_helper.py", "x = 1\nraise RuntimeError('boom')\n")
    path = _write(
        tmp_path / "dags" / "uses_broken.py",
        """
        from orchestrator.authoring.dag import DAG

        import loader_broken_helper
        """,
    )
    error = _only_error(path)
    assert error.line == 3
    assert error.message == "RuntimeError: boom"


def test_an_edited_file_is_read_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Even an edit in the same second that keeps the size: a cached .pyc would hide it."""
    monkeypatch.setattr(sys, "dont_write_bytecode", False)
    source = 'from orchestrator.authoring.dag import DAG\nwith DAG("v1"):\n    pass\n'
    path = _write(tmp_path / "edited.py", source)
    before = os.stat(path)
    assert list(load_dag_file(path).dags) == ["v1"]

    path.write_text(source.replace("v1", "v2"), encoding="utf-8")
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert list(load_dag_file(path).dags) == ["v2"]


def test_files_with_one_name_in_two_folders_do_not_clash(tmp_path: Path) -> None:
    first = _write(
        tmp_path / "a" / "etl.py", "from orchestrator.authoring.dag import DAG\nDAG('etl_a')\n"
    )
    second = _write(
        tmp_path / "b" / "etl.py", "from orchestrator.authoring.dag import DAG\nDAG('etl_b')\n"
    )
    assert module_name_for(str(first)) != module_name_for(str(second))
    assert list(load_dag_file(first).dags) == ["etl_a"]
    assert list(load_dag_file(second).dags) == ["etl_b"]


def test_loading_keeps_an_enclosing_dag_block_open(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "raises.py",
        "from orchestrator.authoring.dag import DAG\nDAG('x').__enter__()\n1/0\n",
    )
    with DAG("outer") as outer:
        load_dag_file(path)
        assert DAG.current() is outer
    assert DAG.current() is None
    assert DAG._collector is None
