"""`orchestrator init`: a project that works as written, and no file overwritten by accident."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from orchestrator.cli import cli
from orchestrator.config import load_settings
from orchestrator.loading.dagbag import load_dag_bag


@pytest.fixture
def runner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.chdir(tmp_path)
    return CliRunner()


def test_init_writes_the_config_and_the_sample_dag(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(cli, ["init", "proj"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "proj" / "orchestrator.toml").is_file()
    assert (tmp_path / "proj" / "dags" / "hello.py").is_file()
    assert result.output.splitlines()[-3:] == [
        "  cd proj",
        "  orchestrator dags list",
        "  orchestrator run hello",
    ]


def test_init_in_the_current_folder_needs_no_cd(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(cli, ["init"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "orchestrator.toml").is_file()
    assert "cd " not in result.output


def test_the_written_project_loads_cleanly(runner: CliRunner, tmp_path: Path) -> None:
    runner.invoke(cli, ["init", "proj"])
    project = tmp_path / "proj"
    settings = load_settings(cwd=project, environ={})
    assert settings.config_file == project / "orchestrator.toml"
    assert settings.state_dir == project / ".orchestrator"
    assert settings.dags_folder == project / "dags"
    assert settings.slots == 4
    bag = load_dag_bag(settings.dags_folder, pools=settings.pool_slots())
    assert bag.errors == []
    hello = bag.get("hello")
    assert set(hello.tasks) == {"where", "compose", "report"}
    assert hello.leaves == ["report"]


def test_init_refuses_to_overwrite_and_names_the_files(runner: CliRunner, tmp_path: Path) -> None:
    runner.invoke(cli, ["init", "proj"])
    config = tmp_path / "proj" / "orchestrator.toml"
    config.write_text("# mine\n")
    result = runner.invoke(cli, ["init", "proj"])
    assert result.exit_code == 2
    assert result.stderr.startswith("error: ")
    assert "orchestrator.toml" in result.stderr and "hello.py" in result.stderr
    assert "--force" in result.stderr
    assert config.read_text() == "# mine\n"


def test_init_refuses_when_only_one_file_exists(runner: CliRunner, tmp_path: Path) -> None:
    (tmp_path / "dags").mkdir()
    (tmp_path / "dags" / "hello.py").write_text("# mine\n")
    result = runner.invoke(cli, ["init"])
    assert result.exit_code == 2
    assert "hello.py already exists" in result.stderr
    assert not (tmp_path / "orchestrator.toml").exists()  # all or nothing


def test_init_force_overwrites(runner: CliRunner, tmp_path: Path) -> None:
    runner.invoke(cli, ["init", "proj"])
    config = tmp_path / "proj" / "orchestrator.toml"
    config.write_text("# mine\n")
    result = runner.invoke(cli, ["init", "proj", "--force"])
    assert result.exit_code == 0, result.output
    assert "state_dir" in config.read_text()


def test_init_into_a_file_is_refused(runner: CliRunner, tmp_path: Path) -> None:
    (tmp_path / "taken").write_text("")
    result = runner.invoke(cli, ["init", "taken"])
    assert result.exit_code == 2
    assert "taken" in result.output
