"""`Connection` / `BaseHook.get_connection`: AIRFLOW_CONN_* first, then the connections file.

Lookups run in this process against a real file in a tmp dir; once through an engine whose
DAG file reads a connection at import (in the import-check subprocess) and in a task (in a
worker process), with the file named only by the settings.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

import anyio
import pytest

from orchestrator.airflow_compat.connections import (
    ConnectionSourceError,
    exported_connections_file,
    find_connection,
    list_connections,
)
from orchestrator.airflow_compat.exceptions import AirflowException, AirflowNotFoundException
from orchestrator.airflow_compat.models import BaseHook, Connection
from orchestrator.config import Settings
from orchestrator.errors import ConfigError
from orchestrator.execution.results import decode_result
from orchestrator.scheduling.engine import Engine
from orchestrator.state import RunState

SECRET = "hunter2-very-secret"
SettingsFactory = Callable[..., Settings]


@pytest.fixture(autouse=True)
def no_connections_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("AIRFLOW_CONN_") or name == "ORCHESTRATOR_CONNECTIONS_FILE":
            monkeypatch.delenv(name)


def named_file(path: Path, document: object) -> AbstractContextManager[None]:
    """Write `document` (JSON text, or a value to dump) to `path` and name it while in use."""
    path.write_text(document if isinstance(document, str) else json.dumps(document))
    return exported_connections_file(path)


def test_the_environment_beats_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    document = {"warehouse": "postgres://file:pw@file-db:5432/sales", "cache": "redis://cache"}
    monkeypatch.setenv("AIRFLOW_CONN_WAREHOUSE", "postgres://env:pw@env-db:5433/sales")
    with named_file(tmp_path / "connections.json", document):
        assert BaseHook.get_connection("warehouse").host == "env-db"
        assert BaseHook.get_connection("cache").host == "cache"
        listed = {connection.conn_id: source for connection, source in list_connections()}
    assert listed == {"cache": "file", "warehouse": "env"}


def test_uri_and_json_forms_from_the_file_and_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fields = {"conn_type": "postgres", "host": "db", "login": "etl", "password": SECRET}
    document = {
        "by_uri": f"http://etl:{SECRET}@api.internal:8080/v1?timeout=3",
        "by_fields": {**fields, "schema": "sales", "port": 5432, "extra": {"sslmode": "require"}},
    }
    monkeypatch.setenv("AIRFLOW_CONN_ENV_JSON", json.dumps({**fields, "port": "6543"}))
    with named_file(tmp_path / "connections.json", document):
        by_uri = Connection.get_connection_from_secrets("by_uri")
        by_fields = BaseHook.get_connection("by_fields")
        env_json, source = find_connection("env_json")
    assert (by_uri.conn_type, by_uri.host, by_uri.port, by_uri.schema) == (
        "http",
        "api.internal",
        8080,
        "v1",
    )
    assert by_uri.password == SECRET and by_uri.extra_dejson == {"timeout": "3"}
    assert (by_fields.login, by_fields.password, by_fields.port) == ("etl", SECRET, 5432)
    assert by_fields.extra_dejson == {"sslmode": "require"}
    assert (env_json.host, env_json.port, source) == ("db", 6543, "env")
    assert SECRET not in repr(by_fields)


def test_a_missing_connection_names_both_places(tmp_path: Path) -> None:
    with (
        named_file(tmp_path / "connections.json", {}),
        pytest.raises(AirflowNotFoundException, match=r"AIRFLOW_CONN_NOPE, or add it to .*json"),
    ):
        BaseHook.get_connection("nope")


@pytest.mark.parametrize(
    ("document", "problem"),
    [
        ('{"warehouse": "postgres://etl:' + SECRET + '@db:5432/x",', "is not valid JSON"),
        (json.dumps(["postgres://etl:" + SECRET + "@db"]), "must hold a JSON object"),
        (json.dumps({"warehouse": "etl:" + SECRET}), "'warehouse' in .* is not a URI"),
        (json.dumps({"warehouse": f"pg://etl:{SECRET}@db:port/x"}), "'warehouse' .* not a valid"),
        (json.dumps({"warehouse": {"password": SECRET, "port": "x"}}), "'warehouse' .* port"),
        (json.dumps({"warehouse": {"password": SECRET, "pasword": SECRET}}), "unknown fields"),
        (json.dumps({"warehouse": 5}), "'warehouse' .* must be a URI or an object"),
    ],
)
def test_a_malformed_file_or_entry_is_named_without_the_password(
    tmp_path: Path, document: str, problem: str
) -> None:
    path = tmp_path / "connections.json"
    with named_file(path, document), pytest.raises(ConnectionSourceError) as raised:
        BaseHook.get_connection("warehouse")
    message = str(raised.value)
    assert str(path) in message and SECRET not in message
    assert re.search(problem, message), message
    assert isinstance(raised.value, AirflowException) and isinstance(raised.value, ConfigError)


def test_malformed_json_in_the_environment_names_the_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_WAREHOUSE", '{"password": "' + SECRET + '", ')
    with pytest.raises(ConnectionSourceError, match="'warehouse' in AIRFLOW_CONN_WAREHOUSE") as e:
        BaseHook.get_connection("warehouse")
    assert SECRET not in str(e.value)


def test_the_file_is_read_again_when_it_changes(tmp_path: Path) -> None:
    path = tmp_path / "connections.json"
    with named_file(path, {"warehouse": "postgres://db-one"}):
        assert BaseHook.get_connection("warehouse").host == "db-one"
        path.write_text(json.dumps({"warehouse": "postgres://db-number-two"}))  # a new size
        assert BaseHook.get_connection("warehouse").host == "db-number-two"


DAG_FILE = """
from datetime import datetime

from airflow import DAG
from airflow.hooks.base import BaseHook
from airflow.operators.python import PythonOperator

AT_IMPORT = BaseHook.get_connection("warehouse").host


def describe():
    import os

    conn = BaseHook.get_connection("warehouse")
    return {"pid": os.getpid(), "at_import": AT_IMPORT, "host": conn.host, "port": conn.port,
            "login": conn.login, "password_length": len(conn.password)}


with DAG("connection_from_file", schedule=None, start_date=datetime(2024, 1, 1)):
    PythonOperator(task_id="describe", python_callable=describe)
"""


async def test_a_task_in_a_worker_reads_a_connection_from_the_file(
    tmp_path: Path, make_settings: SettingsFactory
) -> None:
    connections = tmp_path / "connections.json"
    fields = {"conn_type": "postgres", "host": "db.internal", "login": "etl", "password": SECRET}
    connections.write_text(json.dumps({"warehouse": {**fields, "port": 5433}}))
    (tmp_path / "dags").mkdir()
    (tmp_path / "dags" / "connection_from_file.py").write_text(DAG_FILE)
    settings = make_settings(in_process=False, connections_file=connections)
    async with Engine.open(settings) as engine:
        with anyio.fail_after(60):
            run_id = await engine.trigger("connection_from_file")
            record = await engine.wait(run_id)
        results = await engine.store.get_results(run_id)
    assert record.state is RunState.SUCCESS
    value = decode_result(results["describe", -1])
    assert value.pop("pid") != os.getpid()  # a worker process, not this one
    assert value == {
        "at_import": "db.internal",
        "host": "db.internal",
        "port": 5433,
        "login": "etl",
        "password_length": len(SECRET),
    }
    assert "ORCHESTRATOR_CONNECTIONS_FILE" not in os.environ  # restored after the engine
