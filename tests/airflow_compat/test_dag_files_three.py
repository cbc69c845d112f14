"""A third set of Airflow DAG files, each with Airflow's documented outcome: callbacks, TaskFlow
context, decorated task kinds, native templates and custom operators, LatestOnlyOperator."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from airflowkit import run_dag

from orchestrator.config import Settings
from orchestrator.state import RunState, TaskState

SettingsFactory = Callable[..., Settings]


async def test_task_and_dag_callbacks_are_called(
    make_settings: SettingsFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "calls"
    folder.mkdir()
    monkeypatch.setenv("AIRFLOW_VAR_CALLBACK_FOLDER", str(folder))
    state, _, states = await run_dag(make_settings(), "callbacks")
    assert state is RunState.FAILED
    assert states == {"ok": TaskState.SUCCESS, "bad": TaskState.FAILED}
    assert sorted(path.name for path in folder.iterdir()) == [
        "dag_failed-dag",
        "failed-bad",
        "succeeded-ok",
    ]


async def test_taskflow_context_and_xcom_pull_of_several_tasks(
    make_settings: SettingsFactory,
) -> None:
    state, values, states = await run_dag(make_settings(), "taskflow_context")
    assert state is RunState.SUCCESS, states
    assert values["with_current"] == [1, 2]
    assert values["with_kwargs"] == ["taskflow_context", "with_kwargs", "none"]


async def test_bash_branch_and_short_circuit_decorators(make_settings: SettingsFactory) -> None:
    state, values, states = await run_dag(make_settings(), "decorated_kinds")
    assert state is RunState.SUCCESS, states
    assert values["say"] == "hi-from-bash"
    assert (states["left"], states["right"]) == (TaskState.SUCCESS, TaskState.SKIPPED)
    assert states["behind_gate"] is TaskState.SKIPPED


async def test_native_templates_macros_and_a_custom_operators_template_fields(
    make_settings: SettingsFactory,
) -> None:
    state, values, states = await run_dag(make_settings(), "native_templates")
    assert state is RunState.SUCCESS, states
    assert values["native"] == {"type": "list", "values": [1, 2, 6]}
    assert values["greet"] == {"greeting": "hello data", "total": 6}


async def test_latest_only_runs_downstream_in_a_manual_run(make_settings: SettingsFactory) -> None:
    state, values, states = await run_dag(make_settings(), "latest_only")
    assert state is RunState.SUCCESS, states
    assert states["notify"] is TaskState.SUCCESS and values["notify"] == "sent"
