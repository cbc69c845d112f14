"""The DAGs folder: every file loaded in isolation, folder-wide checks, and lookups."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from orchestrator.errors import DagError, DagNotFoundError
from orchestrator.loading.dagbag import DagBag, dag_files, load_dag_bag


def _write(path: Path, source: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(source).lstrip("\n"), encoding="utf-8")
    return path


def _simple_dag(dag_id: str, pool: str = "default") -> str:
    return (
        "from orchestrator.authoring.dag import DAG\n"
        "from orchestrator.authoring.operators import Shell\n"
        f"with DAG({dag_id!r}):\n"
        f"    Shell('true', task_id='a', pool={pool!r})\n"
    )


def test_every_dag_file_under_the_folder_is_loaded(tmp_path: Path) -> None:
    first = _write(tmp_path / "etl.py", _simple_dag("etl"))
    nested = _write(tmp_path / "team" / "ml" / "train.py", _simple_dag("train"))
    bag = load_dag_bag(tmp_path)
    assert bag.errors == []
    assert bag.folder == tmp_path
    assert sorted(bag.dags) == ["etl", "train"]
    assert bag.files == {"etl": str(first), "train": str(nested)}
    assert bag.get("train").dag_id == "train"


def test_private_hidden_and_cache_entries_are_skipped(tmp_path: Path) -> None:
    kept = _write(tmp_path / "kept.py", _simple_dag("kept"))
    for skipped in (
        "_private.py",
        ".hidden.py",
        "__init__.py",
        "_helpers/inside.py",
        ".venv/lib.py",
        "__pycache__/kept.py",
        "notes.txt",
        "script.pyc",
    ):
        _write(tmp_path / skipped, "raise RuntimeError('must not be imported')\n")
    assert dag_files(tmp_path) == [str(kept)]
    bag = load_dag_bag(tmp_path)
    assert bag.errors == []
    assert list(bag.dags) == ["kept"]


def test_files_are_loaded_in_sorted_order(tmp_path: Path) -> None:
    for name in ("b.py", "a.py", "c/a.py", "a/z.py"):
        _write(tmp_path / name, "")
    names = [str(Path(path).relative_to(tmp_path)) for path in dag_files(tmp_path)]
    assert names == sorted(names)
    assert len(names) == 4


def test_a_broken_file_never_stops_the_others(tmp_path: Path) -> None:
    _write(tmp_path / "a_good.py", _simple_dag("good_a"))
    broken = _write(
        tmp_path / "b_broken.py", "from orchestrator.authoring.dag import DAG\n\n1 / 0\n"
    )
    _write(tmp_path / "c_good.py", _simple_dag("good_c"))
    bag = load_dag_bag(tmp_path)
    assert sorted(bag.dags) == ["good_a", "good_c"]
    [error] = bag.errors
    assert (error.file, error.line) == (str(broken), 3)
    assert "ZeroDivisionError" in error.message


def test_a_helper_module_in_an_underscore_file_can_be_imported(tmp_path: Path) -> None:
    _write(tmp_path / "_dagbag_shared.py", "OWNER = 'data-team'\n")
    _write(
        tmp_path / "uses.py",
        """
        from orchestrator.authoring.dag import DAG
        from _dagbag_shared import OWNER

        with DAG("uses", tags=[OWNER]):
            pass
        """,
    )
    bag = load_dag_bag(tmp_path)
    assert bag.errors == []
    assert bag.get("uses").tags == ("data-team",)


def test_a_missing_folder_says_how_to_set_it(tmp_path: Path) -> None:
    bag = load_dag_bag(tmp_path / "nowhere")
    assert bag.dags == {}
    [error] = bag.errors
    message = str(error)
    assert f"the DAGs folder {tmp_path / 'nowhere'} does not exist" in message
    for way in ("--dags-folder", "ORCHESTRATOR_DAGS_FOLDER", "`dags_folder` in orchestrator.toml"):
        assert way in message


def test_a_file_given_as_the_folder_is_an_error(tmp_path: Path) -> None:
    path = _write(tmp_path / "etl.py", _simple_dag("etl"))
    [error] = load_dag_bag(path).errors
    assert "is not a folder" in error.message


def test_the_same_dag_id_in_two_files_keeps_the_first(tmp_path: Path) -> None:
    first = _write(tmp_path / "a.py", _simple_dag("etl"))
    second = _write(
        tmp_path / "b.py",
        """
        from orchestrator.authoring.dag import DAG

        with DAG("other"):
            pass

        with DAG("etl"):
            pass
        """,
    )
    bag = load_dag_bag(tmp_path)
    assert bag.files == {"etl": str(first), "other": str(second)}
    [error] = bag.errors
    assert (error.file, error.line) == (str(second), 6)
    assert f"DAG id 'etl' is already defined in {first}" in error.message


def test_a_task_in_an_unconfigured_pool_drops_its_dag(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "pools.py",
        """
        from orchestrator.authoring.dag import DAG
        from orchestrator.authoring.operators import Shell

        with DAG("gpu_work"):
            Shell("true", task_id="prepare")
            Shell("true", task_id="train", pool="gpu")

        with DAG("cpu_work"):
            Shell("true", task_id="count", pool="io")
        """,
    )
    bag = load_dag_bag(tmp_path, pools={"default", "io"})
    assert list(bag.dags) == ["cpu_work"]
    [error] = bag.errors
    assert (error.file, error.line) == (str(path), 6)
    assert "task 'train' of DAG 'gpu_work' uses pool 'gpu', which is not configured" in str(error)
    assert "(pools: default, io)" in error.message
    assert "[pools] in orchestrator.toml, e.g. `gpu = 1`" in error.message


def test_every_task_in_an_unconfigured_pool_is_reported(tmp_path: Path) -> None:
    _write(
        tmp_path / "two.py",
        """
        from orchestrator.authoring.dag import DAG
        from orchestrator.authoring.operators import Shell

        with DAG("two", default_args={"pool": "gpu"}):
            Shell("true", task_id="a")
            Shell("true", task_id="b")
        """,
    )
    bag = load_dag_bag(tmp_path, pools=["default"])
    assert bag.dags == {}
    assert [error.line for error in bag.errors] == [5, 6]


def test_pools_are_not_checked_unless_given(tmp_path: Path) -> None:
    _write(tmp_path / "gpu.py", _simple_dag("gpu", pool="gpu"))
    assert list(load_dag_bag(tmp_path).dags) == ["gpu"]


def test_get_names_the_known_dags_and_close_matches(tmp_path: Path) -> None:
    _write(tmp_path / "a.py", _simple_dag("retrain"))
    _write(tmp_path / "b.py", _simple_dag("etl"))
    bag = load_dag_bag(tmp_path)
    with pytest.raises(DagNotFoundError) as caught:
        bag.get("retrian")
    message = str(caught.value)
    assert message.startswith(f"no DAG with id 'retrian' in {tmp_path}; did you mean 'retrain'?")
    assert "DAGs loaded: etl, retrain" in message
    assert "Problems" not in message


def test_get_shows_the_import_errors_that_may_explain_a_missing_dag(tmp_path: Path) -> None:
    broken = _write(tmp_path / "retrain.py", "import no_such_module_for_dagbag_tests\n")
    bag = load_dag_bag(tmp_path)
    with pytest.raises(DagNotFoundError) as caught:
        bag.get("retrain")
    message = str(caught.value)
    assert "DAGs loaded: none" in message
    assert f"{broken}:1: ModuleNotFoundError" in message


def test_an_empty_bag() -> None:
    bag = DagBag(Path("/nowhere"))
    assert (bag.dags, bag.files, bag.errors) == ({}, {}, [])
    with pytest.raises(DagNotFoundError, match="DAGs loaded: none"):
        bag.get("x")
    assert issubclass(DagNotFoundError, DagError)


def test_a_relative_folder_is_made_absolute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _write(tmp_path / "dags" / "etl.py", _simple_dag("etl"))
    monkeypatch.chdir(tmp_path)
    bag = load_dag_bag(Path("dags"))
    assert bag.folder.is_absolute()
    assert Path(bag.files["etl"]).is_absolute()
