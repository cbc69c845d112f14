"""The command group without an engine: help, version, options, config errors, --conf."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from orchestrator.cli import cli
from orchestrator.cli.run import parse_conf
from orchestrator.errors import RunError


def walk(group: click.Group, path: list[str]) -> list[tuple[list[str], bool]]:
    """Every command under `group` as (words, is_group): walked, so none can be forgotten."""
    found: list[tuple[list[str], bool]] = [(path, True)]
    for name, command in sorted(group.commands.items()):
        if isinstance(command, click.Group):
            found.extend(walk(command, [*path, name]))
        else:
            found.append(([*path, name], False))
    return found


COMMANDS = [words for words, is_group in walk(cli, []) if not is_group]
GROUPS = [words for words, is_group in walk(cli, []) if is_group]


def test_the_walk_finds_the_commands_users_rely_on() -> None:
    for command in (["daemon"], ["tokens", "create"], ["webhooks", "add"], ["runs", "cancel"]):
        assert command in COMMANDS
    assert ["tasks", "clear"] in COMMANDS


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty folder as the working directory, with no ORCHESTRATOR_* variable set."""
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith("ORCHESTRATOR_"):
            monkeypatch.delenv(name)
    return tmp_path


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_every_command_has_a_summary_a_description_and_an_example(command: list[str]) -> None:
    result = CliRunner().invoke(cli, [*command, "--help"], prog_name="orchestrator")
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"Usage: orchestrator {' '.join(command)}")
    assert "Example:\n    orchestrator " in result.output


@pytest.mark.parametrize("group", GROUPS, ids=lambda words: " ".join(words) or "orchestrator")
def test_every_group_lists_its_commands(group: list[str]) -> None:
    result = CliRunner().invoke(cli, [*group, "--help"], prog_name="orchestrator")
    assert result.exit_code == 0, result.output
    assert "Commands:" in result.output


def test_settings_options_are_shown_on_commands_too() -> None:
    result = CliRunner().invoke(cli, ["runs", "list", "--help"], prog_name="orchestrator")
    for option in ("--state-dir", "--dags-folder", "--config"):
        assert option in result.output


def test_version() -> None:
    result = CliRunner().invoke(cli, ["--version"], prog_name="orchestrator")
    assert result.exit_code == 0
    assert result.output.strip() == "orchestrator 0.1.0"


def test_help_imports_nothing_heavy() -> None:
    """`--help` must stay instant: no rich, no store, no event loop library, no engine."""
    code = """
import sys
from orchestrator.cli import cli
for args in (["--help"], ["run", "--help"], ["runs", "list", "--help"], ["db", "--help"]):
    cli.main(args, prog_name="orchestrator", standalone_mode=False)
heavy = ("rich", "anyio", "aiosqlite", "orchestrator.scheduling.engine", "orchestrator.store")
print(sorted(name for name in heavy if name in sys.modules))
"""
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_a_missing_config_file_is_one_error_line_and_exit_2(project: Path) -> None:
    result = CliRunner().invoke(cli, ["--config", "nope.toml", "runs", "list"])
    assert result.exit_code == 2
    assert result.stderr.startswith("error: ")
    assert "nope.toml" in result.stderr and "does not exist" in result.stderr
    assert "Traceback" not in result.output


def test_a_misspelt_config_key_is_named(project: Path) -> None:
    (project / "orchestrator.toml").write_text('stat_dir = "x"\n')
    result = CliRunner().invoke(cli, ["runs", "list"])
    assert result.exit_code == 2
    assert "unknown key `stat_dir`" in result.stderr and "state_dir" in result.stderr


def test_a_bad_environment_variable_is_named(project: Path) -> None:
    result = CliRunner().invoke(cli, ["runs", "list"], env={"ORCHESTRATOR_SLOTS": "many"})
    assert result.exit_code == 2
    assert "ORCHESTRATOR_SLOTS" in result.stderr


@pytest.mark.parametrize(
    "args",
    [["--state-dir", "elsewhere", "runs", "list"], ["runs", "list", "--state-dir", "elsewhere"]],
    ids=["before", "after"],
)
def test_settings_options_work_before_and_after_the_command(project: Path, args: list[str]) -> None:
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert result.output.startswith("No runs yet in elsewhere.")


def test_the_option_nearest_the_command_wins(project: Path) -> None:
    result = CliRunner().invoke(
        cli, ["--state-dir", "first", "runs", "list", "--state-dir", "second"]
    )
    assert "No runs yet in second." in result.output


def test_runs_list_json_with_no_state_is_an_empty_list(project: Path) -> None:
    result = CliRunner().invoke(cli, ["runs", "list", "--json"])
    assert result.exit_code == 0
    assert json.loads(result.output) == []


@pytest.mark.parametrize(
    ("conf", "message"),
    [
        ('{"day": ', "error: --conf is not valid JSON: Expecting value: line 1 column 9 (char 8)"),
        ("[1, 2]", "error: --conf must be a JSON object, got a list"),
        ('"monday"', "error: --conf must be a JSON object, got a string"),
        ("3", "error: --conf must be a JSON object, got a number"),
    ],
)
def test_a_bad_conf_is_refused_before_anything_runs(project: Path, conf: str, message: str) -> None:
    result = CliRunner().invoke(cli, ["run", "anything", "--conf", conf])
    assert result.exit_code == 2
    assert result.stderr.startswith(message)
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (project / ".orchestrator").exists()  # nothing was started or written


def test_parse_conf_accepts_objects_and_absence() -> None:
    assert parse_conf(None) == {}
    assert parse_conf('{"day": "2024-06-01", "n": [1, 2]}') == {"day": "2024-06-01", "n": [1, 2]}
    with pytest.raises(RunError, match="got null"):
        parse_conf("null")


def test_slots_must_be_positive(project: Path) -> None:
    result = CliRunner().invoke(cli, ["run", "anything", "--slots", "0"])
    assert result.exit_code == 2
    assert "--slots" in result.output


def test_unknown_run_state_filter_lists_the_states(project: Path) -> None:
    result = CliRunner().invoke(cli, ["runs", "list", "--state", "done"])
    assert result.exit_code == 2
    assert "success" in result.output and "cancelled" in result.output


def test_the_engine_starts_without_the_alert_senders_http_client() -> None:
    """httpx costs 60-75 ms to import; `orchestrator run` needs it only to send an alert."""
    code = "import sys, orchestrator.scheduling.engine; print('httpx' in sys.modules)"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "False"
