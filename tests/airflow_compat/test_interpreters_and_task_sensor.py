"""Callables in another interpreter (virtualenv, external Python) and @task.sensor, from Airflow
DAG files run unchanged."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from airflowkit import run_dag

from orchestrator.airflow_compat.exceptions import AirflowException
from orchestrator.airflow_compat.interpreters import (
    ExternalPythonOperator,
    function_source,
    refuse_unportable,
)
from orchestrator.config import Settings
from orchestrator.state import RunState, TaskState

SettingsFactory = Callable[..., Settings]
LIMIT = 10


async def test_callables_run_in_a_virtualenv_and_an_external_python(
    make_settings: SettingsFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    state, values, states = await run_dag(make_settings(), "other_interpreters")
    assert state is RunState.SUCCESS, states
    assert values["venv"] == {"total": 12, "venv": True}
    assert values["external"]["executable"] == sys.executable
    assert values["external"]["has_ds"] is True  # a context value asked for by name
    assert values["combine"] == [{"total": 12, "venv": True}, '{"word": "HELLO"}', 9]
    venvs = sorted(path.name for path in (tmp_path / "cache/orchestrator/airflow-venvs").iterdir())
    assert len(venvs) == 2 and all(name.startswith("venv-") for name in venvs)  # one per key


async def test_a_second_run_reuses_the_cached_virtualenv(
    make_settings: SettingsFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    await run_dag(make_settings(), "other_interpreters")
    cache = tmp_path / "cache/orchestrator/airflow-venvs"
    before = {path.name: path.stat().st_ino for path in cache.iterdir()}
    state, _, _ = await run_dag(make_settings(), "other_interpreters")
    assert state is RunState.SUCCESS
    assert {path.name: path.stat().st_ino for path in cache.iterdir()} == before


def _uses_a_global() -> int:
    return LIMIT


def test_callables_that_cannot_run_from_their_source_are_refused_at_definition() -> None:
    limit = 3

    def closure() -> int:
        return limit

    with pytest.raises(AirflowException, match="limit from an enclosing function"):
        refuse_unportable(closure, "PythonVirtualenvOperator")
    with pytest.raises(AirflowException, match="module-level name"):
        refuse_unportable(_uses_a_global, "PythonVirtualenvOperator")
    with pytest.raises(AirflowException, match="only supports functions"):
        refuse_unportable(lambda: 1, "ExternalPythonOperator")


def test_the_source_sent_has_no_decorators() -> None:
    def decorate(function: Callable[..., int]) -> Callable[..., int]:
        return function

    @decorate
    def doubled(value: int) -> int:
        return value * 2

    assert function_source(doubled) == "def doubled(value: int) -> int:\n    return value * 2"


def test_a_missing_interpreter_is_a_clear_error(tmp_path: Path) -> None:
    operator = ExternalPythonOperator.__new__(ExternalPythonOperator)
    operator.python = str(tmp_path / "no-python")
    with pytest.raises(AirflowException, match="must exist"):
        operator.python_path()


async def test_task_sensor_pokes_until_done_and_soft_fail_skips(
    make_settings: SettingsFactory, tmp_path: Path
) -> None:
    state, values, states = await run_dag(
        make_settings(), "task_sensors", {"folder": str(tmp_path)}
    )
    assert state is RunState.SUCCESS, states
    assert values["third_poke"] == {"pokes": 3}
    assert values["report"] == "done after 3 pokes"
    assert states["ready_now"] is TaskState.SUCCESS
    assert states["never"] is TaskState.SKIPPED
