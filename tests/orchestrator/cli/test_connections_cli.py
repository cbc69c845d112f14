"""`orchestrator connections list|get`: AIRFLOW_CONN_* and the connections file, passwords masked.

Commands run in-process with click's CliRunner; no daemon is involved (nothing is written).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import pytest
from clikit import CliCalls

SECRET = "hunter2-very-secret"


@dataclass(frozen=True)
class Project(CliCalls):
    dags: Path
    state: Path
    connections: Path


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Project:
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith(("ORCHESTRATOR_", "AIRFLOW_CONN_")):
            monkeypatch.delenv(name)
    project = Project(
        dags=tmp_path / "dags", state=tmp_path / "state", connections=tmp_path / "conns.json"
    )
    document = {
        "warehouse": {
            "conn_type": "postgres",
            "host": "db.internal",
            "login": "etl",
            "password": SECRET,
            "port": 5432,
            "extra": {"sslmode": "require", "api_key": SECRET},
        },
        "api": f"http://bot:{SECRET}@api.internal:8080/v1",
    }
    project.connections.write_text(json.dumps(document))
    (tmp_path / "orchestrator.toml").write_text('connections_file = "conns.json"\n')
    monkeypatch.setenv("AIRFLOW_CONN_API", f"https://env-bot:{SECRET}@api.example.com")
    return project


def test_connections_are_listed_from_env_and_file_with_passwords_masked(project: Project) -> None:
    listed = project.json("connections", "list")["connections"]
    assert listed == [
        {
            "conn_id": "api",
            "conn_type": "https",
            "host": "api.example.com",
            "port": None,
            "login": "env-bot",
            "password": "***",
            "source": "env",
        },
        {
            "conn_id": "warehouse",
            "conn_type": "postgres",
            "host": "db.internal",
            "port": 5432,
            "login": "etl",
            "password": "***",
            "source": "file",
        },
    ]
    table = project.ok("connections", "list").stdout
    assert SECRET not in table
    assert "warehouse" in table and "db.internal" in table and "***" in table


def test_get_masks_the_password_and_secret_extras_unless_asked(project: Project) -> None:
    shown = project.json("connections", "get", "warehouse")
    assert shown["password"] == "***" and shown["source"] == "file"
    assert shown["extra"] == {"sslmode": "require", "api_key": "***"}
    text = project.ok("connections", "get", "warehouse").stdout
    assert SECRET not in text and "host: db.internal" in text and "password: ***" in text
    revealed = project.json("connections", "get", "warehouse", "--show-password")
    assert revealed["password"] == SECRET and revealed["extra"]["api_key"] == SECRET


def test_get_of_an_unknown_connection_says_where_to_define_it(project: Project) -> None:
    missing = project.invoke("connections", "get", "nope")
    assert missing.exit_code != 0
    assert "AIRFLOW_CONN_NOPE" in missing.stderr and str(project.connections) in missing.stderr


def test_a_malformed_entry_fails_the_command_naming_it_without_the_password(
    project: Project,
) -> None:
    project.connections.write_text(json.dumps({"warehouse": {"password": SECRET, "port": "x"}}))
    for command in (["list"], ["get", "warehouse", "--show-password"]):
        result = project.invoke("connections", *command)
        assert result.exit_code != 0
        assert "'warehouse'" in result.stderr and str(project.connections) in result.stderr
        assert SECRET not in result.stdout + result.stderr
