"""`orchestrator run` of a DAG whose task depends on its past, as a real subprocess.

Nothing in the foreground process can clear a previous run's failed task, so a run waiting on
one must stop with an error rather than hang: each call runs under `run_cli`'s deadline.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
from clikit import run_cli

from orchestrator.config import Settings
from orchestrator.scheduling.engine import Engine
from orchestrator.state import RunState

DAGS = """
from pathlib import Path

from orchestrator.authoring.dag import DAG
from orchestrator.authoring.taskflow import task

BROKEN = Path(__file__).parent.parent / "broken"


@task
def extract() -> int:
    return 1


@task(depends_on_past=True)
def load(value: int) -> int:
    if BROKEN.exists():
        raise RuntimeError("the warehouse is down")
    return value


with DAG("daily"):
    load(extract())
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "dags").mkdir()
    (tmp_path / "dags" / "daily.py").write_text(DAGS)
    return tmp_path


async def run_daily(project: Path, *flags: str) -> tuple[int, str]:
    """`orchestrator run daily`: its exit code and stderr."""
    done = await run_cli(project, "run", "daily", "--in-process", *flags)
    return done.code, done.stderr


async def runs(project: Path) -> list[dict[str, Any]]:
    """Every run of the project, oldest first."""
    listed = (await run_cli(project, "runs", "list", "--json")).json()
    return list(reversed(listed))


async def tasks_of(project: Path, run_id: str) -> dict[str, tuple[str, str | None]]:
    shown = (await run_cli(project, "runs", "show", run_id, "--json")).json()
    return {ti["task_id"]: (ti["state"], ti["error"]) for ti in shown["task_instances"]}


async def test_after_a_failed_previous_run_the_run_stops_with_an_error_saying_how_to_go_on(
    project: Path,
) -> None:
    (project / "broken").touch()
    assert (await run_daily(project))[0] == 1
    (project / "broken").unlink()
    code, stderr = await run_daily(project)
    first, second = (run["run_id"] for run in await runs(project))
    assert code == 1
    assert stderr.splitlines() == [
        f"error: run {second} of daily cannot go on: tasks that depend on their past wait on",
        f"  load: the previous run's load ({first}) ended failed",
        f"Run {second} is left unfinished. To go on, clear the old task (`orchestrator tasks "
        f"clear {first} load`) and start `orchestrator daemon`: it reruns it, then this run; "
        "or run again without waiting on the past: "
        "`orchestrator run daily --ignore-depends-on-past`",
    ]
    # Left as a daemon would find it after its shutdown: the wait goes on there.
    assert [run["state"] for run in await runs(project)] == ["failed", "running"]
    assert await tasks_of(project, second) == {
        "extract": ("success", None),
        "load": ("none", f"waiting for the previous run's load ({first})"),
    }


async def test_the_run_left_unfinished_goes_on_once_the_old_task_is_cleared_and_a_daemon_runs(
    project: Path, make_settings: Callable[..., Settings]
) -> None:
    (project / "broken").touch()
    await run_daily(project)
    (project / "broken").unlink()
    await run_daily(project)
    first, second = (run["run_id"] for run in await runs(project))
    assert (await run_cli(project, "tasks", "clear", first, "load")).code == 0
    # What `orchestrator daemon` does as it starts: pick up the unfinished runs and drive them.
    async with Engine.open(make_settings(state_dir=project / ".orchestrator")) as engine:
        with anyio.fail_after(30):
            ended = [(await engine.wait(run_id)).state for run_id in (first, second)]
    assert ended == [RunState.SUCCESS, RunState.SUCCESS]


async def test_a_run_after_one_left_waiting_names_it_and_ignore_depends_on_past_runs_anyway(
    project: Path,
) -> None:
    (project / "broken").touch()
    await run_daily(project)
    (project / "broken").unlink()
    await run_daily(project)  # left waiting on the failed first run
    code, stderr = await run_daily(project)
    _, waiting, third = (run["run_id"] for run in await runs(project))
    assert code == 1
    assert f"  load: the previous run's load ({waiting}) is none in a run left running" in stderr
    assert "start `orchestrator daemon`: it drives the previous run, then this run" in stderr
    assert await run_daily(project, "--ignore-depends-on-past") == (0, "")
    fourth = (await runs(project))[-1]
    assert fourth["state"] == "success" and fourth["run_id"] != third
    assert (await tasks_of(project, fourth["run_id"]))["load"] == ("success", None)


async def test_after_a_successful_previous_run_the_run_goes_on_as_usual(project: Path) -> None:
    assert await run_daily(project) == (0, "")
    assert await run_daily(project) == (0, "")
    assert [run["state"] for run in await runs(project)] == ["success", "success"]
