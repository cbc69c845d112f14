"""The end-of-run summary's pieces: leaf results, the run's log folder, value formatting."""

from __future__ import annotations

from pathlib import Path

from orchestrator.cli.summary import format_value, headline, leaf_results, run_logs_dir
from orchestrator.state import RunState
from orchestrator.store.records import RunRecord


def test_leaf_results_decode_only_the_leaves_in_their_order() -> None:
    results = {
        ("extract", -1): "[1,2,3]",
        ("evaluate", -1): '{"model_path":"/m.bin","accuracy":0.97}',
        ("notify", -1): '"sent"',
    }
    assert leaf_results(["notify", "evaluate"], results) == {
        "notify": "sent",
        "evaluate": {"model_path": "/m.bin", "accuracy": 0.97},
    }


def test_leaf_results_gather_an_expanded_leaf_in_map_order_and_skip_none() -> None:
    results = {("square", 2): "9", ("square", 0): "1", ("square", 1): "4", ("log", -1): "null"}
    assert leaf_results(["square", "log"], results) == {"square": [1, 4, 9]}


def test_run_logs_dir_is_the_ancestor_named_after_the_run(tmp_path: Path) -> None:
    paths = [f"{tmp_path}/logs/etl/20240601T120000Z-ab12cd/train/try-1.log"]
    found = run_logs_dir(paths, "20240601T120000Z-ab12cd", default=tmp_path)
    assert found == tmp_path / "logs" / "etl" / "20240601T120000Z-ab12cd"


def test_run_logs_dir_matches_a_run_id_made_safe_for_file_names(tmp_path: Path) -> None:
    paths = [f"{tmp_path}/logs/etl/manual__2024-06-01T12_00_00/train/try-1.log"]
    found = run_logs_dir(paths, "manual__2024-06-01T12:00:00", default=tmp_path)
    assert found.name == "manual__2024-06-01T12_00_00"


def test_run_logs_dir_falls_back_to_the_shared_folder_then_the_default(tmp_path: Path) -> None:
    paths = [f"{tmp_path}/x/a/try-1.log", f"{tmp_path}/x/b/try-1.log"]
    assert run_logs_dir(paths, "unrelated", default=tmp_path / "d") == tmp_path / "x"
    assert run_logs_dir([], "unrelated", default=tmp_path / "d") == tmp_path / "d"


def test_format_value_prints_strings_raw_and_the_rest_as_json() -> None:
    assert format_value("/models/model.joblib") == "/models/model.joblib"
    assert format_value({"a": [1, "é"]}) == '{"a": [1, "é"]}'
    assert format_value(0.5) == "0.5"
    long = format_value("x" * 5000)
    assert long.startswith("x" * 100) and long.endswith("(5000 characters)")


def test_headline_names_the_run_its_state_and_duration() -> None:
    run = RunRecord(
        run_id="r1",
        dag_id="etl",
        state=RunState.FAILED,
        conf={},
        queued_at=100.0,
        started_at=101.0,
        ended_at=104.5,
    )
    assert headline(run).plain == "Run r1 of etl: failed in 3.50s"
