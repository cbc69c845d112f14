"""`orchestrator variables` and `Variable.get`/`set`: the store, the environment, a daemon.

Commands run in-process with click's CliRunner on a real store in a tmp dir; once through a
real daemon subprocess, whose log must not hold a secret value.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest
from clikit import CliCalls
from crashkit import DaemonProcess, new_marker

from orchestrator.airflow_compat.exceptions import AirflowException
from orchestrator.airflow_compat.models import Variable
from orchestrator.store.variables import exported_variables_db

SECRET = "hunter2-very-secret"
DEADLINE = 30.0


@dataclass(frozen=True)
class Project(CliCalls):
    dags: Path
    state: Path


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Project:
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith(("ORCHESTRATOR_", "AIRFLOW_VAR_")):
            monkeypatch.delenv(name)
    project = Project(dags=tmp_path / "dags", state=tmp_path / "state")
    project.dags.mkdir()
    return project


def test_variables_are_set_listed_with_secrets_masked_got_and_deleted(project: Project) -> None:
    assert "through the store" in project.ok("variables", "set", "region", "emea").stdout
    project.ok("variables", "set", "db_password", SECRET, "--description", "warehouse")
    listed = project.ok("variables", "list").stdout
    assert SECRET not in listed
    assert "db_password = ***  # warehouse" in listed and "region = emea" in listed
    assert project.json("variables", "list")["variables"][0] == {
        "key": "db_password",
        "value": "***",
        "description": "warehouse",
    }
    assert project.ok("variables", "get", "db_password").stdout == f"{SECRET}\n"
    project.ok("variables", "delete", "region")
    missing = project.invoke("variables", "get", "region")
    assert missing.exit_code != 0 and "there is no variable 'region'" in missing.stderr


def test_variable_get_reads_the_environment_before_the_store(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    project.ok("variables", "set", "limits", '{"max_rows": 500}')
    project.ok("variables", "set", "region", "from-store")
    monkeypatch.setenv("AIRFLOW_VAR_REGION", "from-env")
    with exported_variables_db(project.state):
        assert Variable.get("limits", deserialize_json=True) == {"max_rows": 500}
        assert Variable.get("region") == "from-env"
        assert Variable.get("absent", default_var="fallback") == "fallback"
        with pytest.raises(KeyError, match="orchestrator variables set absent VALUE"):
            Variable.get("absent")


def test_variable_get_finds_nothing_before_the_store_exists(project: Project) -> None:
    with exported_variables_db(project.state):
        assert Variable.get("region", default_var=None) is None


def test_variable_set_is_refused_while_an_engine_owns_the_store(project: Project) -> None:
    with exported_variables_db(project.state), pytest.raises(AirflowException) as caught:
        Variable.set("region", "emea")
    assert "orchestrator variables set region VALUE" in str(caught.value)


def test_a_secret_variable_set_through_the_daemon_is_never_logged(project: Project) -> None:
    environment = {"ORCHESTRATOR_API_ENABLED": "false"}
    with DaemonProcess(
        project.state, project.dags, marker=new_marker(), env=environment
    ) as process:
        process.wait_ready(DEADLINE)
        set_result = project.ok("variables", "set", "api_token", SECRET)
        assert "through the daemon" in set_result.stdout and SECRET not in set_result.stdout
        assert SECRET not in project.ok("variables", "list").stdout
        assert project.ok("variables", "get", "api_token").stdout == f"{SECRET}\n"
        assert project.ok("variables", "delete", "api_token").exit_code == 0
        process.terminate()
        assert process.wait_exit(DEADLINE) == 0, process.log_text()
        assert SECRET not in process.log_text()
