"""The Airflow DAG files served by a real `orchestrator daemon`, triggered from outside it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from crashkit import DaemonProcess, new_marker, orphans, store_rows, wait_until

from orchestrator.daemon.control import control_path, request_sync
from orchestrator.errors import OrchestratorError

pytestmark = pytest.mark.slow

DAGS = Path(__file__).resolve().parent / "dags"


def trigger_by_cli(project: Path, dag_id: str) -> str:
    argv = [sys.executable, "-m", "orchestrator", "trigger", dag_id, "--json"]
    argv += ["--state-dir", str(project / "state"), "--dags-folder", str(project / "dags")]
    done = subprocess.run(argv, env=os.environ, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert answer["via"] == "daemon"
    return str(answer["run_id"])


def refused_by_cli(project: Path, dag_id: str, conf: str) -> str:
    argv = [sys.executable, "-m", "orchestrator", "trigger", dag_id, "--conf", conf]
    argv += ["--state-dir", str(project / "state"), "--dags-folder", str(project / "dags")]
    done = subprocess.run(argv, env=os.environ, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0, done.stdout
    return done.stderr


def quoted(text: str) -> str:
    """`text` as an SQL string literal (store_rows takes no parameters)."""
    return "'" + text.replace("'", "''") + "'"


def finished(state_dir: Path, run_ids: list[str]) -> dict[str, str] | None:
    """The runs' states once none of them is still queued or running."""
    names = ", ".join(quoted(run_id) for run_id in run_ids)
    rows = store_rows(state_dir, f"SELECT run_id, state FROM runs WHERE run_id IN ({names})")
    states = {str(run_id): str(state) for run_id, state in rows}
    if len(states) < len(run_ids) or set(states.values()) & {"queued", "running"}:
        return None
    return states


def task_states(state_dir: Path, run_id: str) -> dict[str, str]:
    sql = f"SELECT task_id, state FROM task_instances WHERE run_id = {quoted(run_id)}"
    return {str(task_id): str(state) for task_id, state in store_rows(state_dir, sql)}


def task_errors(state_dir: Path, run_ids: list[str]) -> str:
    """Each unsuccessful task instance of the runs with its error: what a failed assert shows."""
    names = ", ".join(quoted(run_id) for run_id in run_ids)
    sql = (
        "SELECT run_id, task_id, state, error FROM task_instances "
        f"WHERE run_id IN ({names}) AND state != 'success'"
    )
    return "\n".join(" ".join(map(str, row)) for row in store_rows(state_dir, sql))


def test_the_daemon_runs_the_airflow_dags_folder_triggered_from_outside(tmp_path: Path) -> None:
    shutil.copytree(DAGS, tmp_path / "dags")
    marker = new_marker()
    with DaemonProcess(tmp_path / "state", tmp_path / "dags", marker=marker) as daemon:
        daemon.wait_ready(60)
        snippet = trigger_by_cli(tmp_path, "ml_pipeline")
        request = {"op": "trigger", "dag_id": "taskflow_etl", "conf": {"multiplier": 3}}
        etl = str(request_sync(control_path(daemon.state_dir), request)["run_id"])
        states = wait_until(
            lambda: finished(daemon.state_dir, [snippet, etl]), 90, f"both runs, {daemon}"
        )
        errors = task_errors(daemon.state_dir, [snippet, etl])
        assert states == {snippet: "success", etl: "success"}, f"{daemon}\n{errors}"
        assert task_states(daemon.state_dir, snippet) == {
            "ingest": "success",
            "preprocess": "success",
        }
        assert task_states(daemon.state_dir, etl)["load"] == "success"
        bad = {"op": "trigger", "dag_id": "validated_params", "conf": {"batch_size": 0}}
        with pytest.raises(OrchestratorError, match="Invalid input for param batch_size"):
            request_sync(control_path(daemon.state_dir), bad)
        assert "Invalid input for param mode" in refused_by_cli(
            tmp_path, "validated_params", '{"mode": "partial"}'
        )
        daemon.terminate()
        assert daemon.wait_exit(30) == 0, daemon.log_text()
    wait_until(lambda: not orphans(marker), 15, "no process of the daemon's left behind")
