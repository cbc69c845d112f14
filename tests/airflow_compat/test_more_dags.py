"""More Airflow DAG files as users write them: templates from files, setup/teardown, Variables
and Connections from the environment, DAGs without a with block, mapping classic operators."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from airflowkit import run_dag

from orchestrator.config import Settings
from orchestrator.state import RunState, TaskState

SettingsFactory = Callable[..., Settings]


async def test_templates_come_from_sql_and_sh_files_on_the_search_path(
    make_settings: SettingsFactory,
) -> None:
    state, values, states = await run_dag(make_settings(), "templated_files")
    assert state is RunState.SUCCESS, states
    assert values["report"] == ("SELECT * FROM sales WHERE day = '2024-01-02' AND region = 'emea'")
    assert values["greet"] == "hello greet from emea"


async def test_a_teardown_runs_after_failed_work_and_the_run_fails_with_the_work(
    make_settings: SettingsFactory,
) -> None:
    state, values, states = await run_dag(make_settings(), "setup_teardown")
    assert state is RunState.FAILED
    assert states == {
        "create_cluster": TaskState.SUCCESS,
        "work": TaskState.FAILED,
        "delete_cluster": TaskState.SUCCESS,
    }
    assert values["delete_cluster"] == "deleted cluster-1"


async def test_variables_and_connections_come_from_the_environment(
    make_settings: SettingsFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIRFLOW_VAR_REGION", "emea")
    monkeypatch.setenv("AIRFLOW_VAR_LIMITS", '{"max_rows": 500}')
    monkeypatch.setenv("AIRFLOW_CONN_WAREHOUSE", "postgres://etl:secret@db.internal:5433/sales")
    state, values, states = await run_dag(make_settings(), "variables_connections")
    assert state is RunState.SUCCESS, states
    assert values["describe"] == {
        "region": "emea",
        "missing": "fallback",
        "max_rows": 500,
        "host": "db.internal",
        "port": 5433,
        "login": "etl",
        "schema": "sales",
    }
    assert values["templated"] == "emea"


async def test_a_dag_without_a_with_block_labels_and_chain(make_settings: SettingsFactory) -> None:
    state, values, states = await run_dag(make_settings(), "labels_outside_with")
    assert state is RunState.SUCCESS, states
    assert set(states) == {"start", "check", "load", "end"}
    assert values["check"] == "valid"
    assert values["load"] == "loaded"


async def test_classic_operators_expand_and_expand_kwargs(make_settings: SettingsFactory) -> None:
    state, values, states = await run_dag(make_settings(), "classic_expand")
    assert state is RunState.SUCCESS, states
    assert values["echo"] == {0: "one", 1: "two"}
    assert values["add"] == {0: 3, 1: 7, 2: 11}
