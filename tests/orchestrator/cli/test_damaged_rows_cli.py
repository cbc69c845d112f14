"""A damaged row on the command line: marked "damaged", the listing goes on, exit code 0;
`db check` fails naming the table, the row and the column."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
from clikit import CliCalls
from damagekit import DAMAGES, check_line, damage, fill_state

NOTE = "(`orchestrator db check` lists every damaged row)"


@dataclass
class Project(CliCalls):
    state: Path
    dags: Path


@pytest.fixture
async def project(tmp_path: Path) -> Project:
    state, dags = tmp_path / "state", tmp_path / "dags"
    dags.mkdir()
    await fill_state(state)
    return Project(state, dags)


#: Per command: the damaged value, and the text of the row listed beside the damaged one.
LISTINGS = {
    ("runs", "list"): ("runs.conf", "run-2"),
    ("runs", "show", "run-1"): ("task_instances.next_call", "wait damaged"),
    ("events", "list"): ("events.payload", "/data/2.csv"),
    ("triggers", "list"): ("triggers.kwargs", "run-2"),
    ("webhooks", "list"): ("webhooks.filters", "hook-2"),
}


@pytest.mark.parametrize("command", list(LISTINGS))
def test_a_listing_marks_the_damaged_row_and_goes_on(
    project: Project, command: tuple[str, ...]
) -> None:
    name, other = LISTINGS[command]
    damage(project.state, DAMAGES[name])
    shown = project.ok(*command).stdout
    assert " damaged" in shown and NOTE in shown, shown
    assert other in shown
    column = DAMAGES[name].column
    assert f"is damaged: {column} is not" in " ".join(shown.split()), shown


def test_runs_show_of_a_damaged_run_says_why(project: Project) -> None:
    damage(project.state, DAMAGES["runs.conf"])
    shown = " ".join(project.ok("runs", "show", "run-1").stdout.split())
    assert "run run-1 is damaged: conf is not valid JSON" in shown
    assert project.json("runs", "show", "run-1")["run"]["damaged"].startswith("conf is not")


def test_tokens_list_is_untouched_by_damage_elsewhere(project: Project) -> None:
    damage(project.state, *(DAMAGES[name] for name in ("runs.conf", "webhooks.conf_map")))
    assert "tok-1" in project.ok("tokens", "list").stdout


def test_tasks_logs_warns_about_a_damaged_task_instance(project: Project) -> None:
    damage(project.state, DAMAGES["task_instances.next_call"])
    result = project.ok("tasks", "logs", "run-1", "wait")
    assert result.stdout == "waiting for the file\n"
    assert "task wait of run run-1 is damaged: next_call is not valid JSON" in result.stderr


@pytest.mark.parametrize("name", ["runs.conf", "triggers.cursor", "task_results.value"])
def test_db_check_fails_naming_table_row_and_column(project: Project, name: str) -> None:
    damage(project.state, DAMAGES[name])
    result = project.invoke("db", "check")
    assert result.exit_code == 1
    assert f"damaged row: {check_line(DAMAGES[name])}" in result.stdout
    assert project.ok("runs", "list").exit_code == 0  # the listing itself still works
