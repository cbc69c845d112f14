"""The run display: plain lines off a terminal, a live table on one, fed by changes."""

from __future__ import annotations

import io
import time
from collections.abc import AsyncIterator

import pytest
from rich.console import Console

from orchestrator.authoring.dag import DAG
from orchestrator.authoring.taskflow import task
from orchestrator.changes import Change, RunChanged, TaskChanged
from orchestrator.cli.display import RunDisplay, format_duration, plain_line, task_label
from orchestrator.state import RunState, TaskState
from orchestrator.store.records import TaskInstanceRecord

START = 1_800_000_000.0
CLOCK = time.strftime("%H:%M:%S", time.localtime(START))


@task
def numbers() -> list[int]:
    return [1, 2]


@task
def square(x: int) -> int:
    return x * x


@task
def train(values: list[int]) -> int:
    return sum(values)


def make_dag() -> DAG:
    with DAG("pipeline") as pipeline:
        train(square.expand(x=numbers()))
    return pipeline


def changed(
    task_id: str,
    state: TaskState,
    *,
    at: float = START,
    try_number: int = 1,
    map_index: int = -1,
    error: str | None = None,
    run_id: str = "r1",
) -> TaskChanged:
    return TaskChanged(
        run_id=run_id,
        dag_id="pipeline",
        task_id=task_id,
        map_index=map_index,
        state=state,
        try_number=try_number,
        at=at,
        error=error,
        log_path=f"/logs/pipeline/{run_id}/{task_id}/try-{try_number}.log",
    )


def plain_display(now: float = START) -> tuple[RunDisplay, io.StringIO]:
    out = io.StringIO()
    console = Console(file=out, width=200, color_system=None)
    return RunDisplay(make_dag(), run_id="r1", console=console, live=False, now=lambda: now), out


def test_plain_line_matches_the_documented_layout() -> None:
    line = plain_line(START, "train", "running", 1, None, width=16)
    assert line.plain == f"{CLOCK} train            running  (try 1)"


def test_plain_line_shows_the_error_and_omits_try_zero() -> None:
    failed = plain_line(START, "train", "failed", 2, "ValueError: bad row", width=16)
    assert failed.plain == f"{CLOCK} train            failed   (try 2)  ValueError: bad row"
    pending = plain_line(START, "train", "scheduled", 0, None, width=16)
    assert pending.plain == f"{CLOCK} train            scheduled"


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(None, ""), (0.421, "0.42s"), (12.34, "12.3s"), (125, "2m05s"), (3720, "1h02m")],
)
def test_format_duration(seconds: float | None, text: str) -> None:
    assert format_duration(seconds) == text


def test_task_label_marks_map_indexes() -> None:
    assert task_label("train", -1) == "train"
    assert task_label("square", 3) == "square[3]"


async def test_plain_mode_prints_one_line_per_change_of_its_own_run() -> None:
    display, out = plain_display()
    changes: list[Change] = [
        RunChanged(run_id="r1", dag_id="pipeline", state=RunState.RUNNING, at=START),
        changed("numbers", TaskState.RUNNING),
        changed("numbers", TaskState.RUNNING, run_id="another-run"),
        changed("numbers", TaskState.SUCCESS, at=START + 1),
    ]

    async def stream() -> AsyncIterator[Change]:
        for change in changes:
            yield change

    with display:
        await display.follow(stream())
    lines = out.getvalue().splitlines()
    assert lines == [
        "Run r1 of pipeline (3 tasks)",
        f"{CLOCK} run              running",
        f"{CLOCK} numbers          running  (try 1)",
        f"{time.strftime('%H:%M:%S', time.localtime(START + 1))} numbers          success  (try 1)",
    ]
    assert display.run_state is RunState.RUNNING


def test_run_changes_set_the_run_state() -> None:
    display, _ = plain_display()
    display.apply(RunChanged(run_id="r1", dag_id="pipeline", state=RunState.FAILED, at=START))
    display.apply(RunChanged(run_id="r2", dag_id="pipeline", state=RunState.SUCCESS, at=START))
    assert display.run_state is RunState.FAILED


def test_expanded_instances_replace_the_placeholder_row() -> None:
    display, _ = plain_display()
    assert [row.label for row in display.rows] == ["numbers", "square", "train"]
    display.apply(changed("square", TaskState.SCHEDULED, map_index=1, try_number=0))
    display.apply(changed("square", TaskState.SCHEDULED, map_index=0, try_number=0))
    assert [row.label for row in display.rows] == ["numbers", "square[0]", "square[1]", "train"]


def test_durations_follow_the_try_and_stop_when_it_ends() -> None:
    display, _ = plain_display()
    display.apply(changed("numbers", TaskState.RUNNING, at=START))
    row = display.rows[0]
    assert row.duration(now=START + 5) == 5
    display.apply(changed("numbers", TaskState.UP_FOR_RETRY, at=START + 2, error="boom"))
    assert row.duration(now=START + 60) == 2
    display.apply(changed("numbers", TaskState.RUNNING, at=START + 10, try_number=2))
    assert row.duration(now=START + 11) == 1
    assert (row.try_number, row.error) == (2, None)


def test_finish_announces_what_the_stream_missed_and_takes_the_store_rows() -> None:
    display, out = plain_display()
    display.apply(changed("numbers", TaskState.RUNNING))
    final = TaskInstanceRecord(
        run_id="r1",
        task_id="numbers",
        state=TaskState.FAILED,
        try_number=1,
        started_at=START,
        ended_at=START + 3,
        error="ValueError: bad",
    )
    display.finish([final])
    assert out.getvalue().splitlines()[-1].endswith("failed   (try 1)  ValueError: bad")
    row = display.rows[0]
    assert (row.state, row.duration(now=START + 100), row.error) == (
        TaskState.FAILED,
        3,
        "ValueError: bad",
    )
    display.finish([final])  # already known: nothing more is printed
    assert out.getvalue().count("failed") == 1


def test_seed_takes_rows_the_plan_did_not_have() -> None:
    display, out = plain_display()
    display.seed(
        [TaskInstanceRecord(run_id="r1", task_id="square", map_index=0, state=TaskState.QUEUED)]
    )
    assert "square[0]" in [row.label for row in display.rows]
    assert out.getvalue() == ""  # seeding is silent


def test_log_paths_are_remembered_from_changes() -> None:
    display, _ = plain_display()
    display.apply(changed("numbers", TaskState.RUNNING))
    assert display.log_paths == ["/logs/pipeline/r1/numbers/try-1.log"]


def test_render_shows_states_progress_and_errors() -> None:
    display, _ = plain_display(now=START + 4)
    display.apply(changed("numbers", TaskState.RUNNING, at=START))
    display.apply(changed("numbers", TaskState.FAILED, at=START + 1.5, error="KeyError: 'x'"))
    display.apply(changed("train", TaskState.UPSTREAM_FAILED, try_number=0))
    console = Console(file=io.StringIO(), width=120, color_system=None, record=True)
    console.print(display.render())
    text = console.export_text()
    assert "numbers" in text and "failed" in text and "1.50s" in text
    assert "KeyError: 'x'" in text  # shown as text, not taken for rich markup
    assert "2/3 finished" in text and "1 failed" in text


def test_render_keeps_running_and_failed_rows_when_the_screen_is_small() -> None:
    with DAG("wide") as wide:
        for number in range(40):
            square.override(task_id=f"t{number:02d}")(number)
    console = Console(file=io.StringIO(), width=120, height=20, color_system=None, record=True)
    display = RunDisplay(wide, run_id="r1", console=console, live=False, now=lambda: START)
    display.apply(changed("t39", TaskState.RUNNING))
    display.apply(changed("t38", TaskState.FAILED, error="boom"))
    console.print(display.render())
    text = console.export_text()
    assert "t39" in text and "t38" in text and "more tasks" in text
    assert "t30" not in text  # pending rows gave way to the ones that matter


def test_live_mode_draws_a_table_and_stops_on_exit() -> None:
    out = io.StringIO()
    console = Console(file=out, width=100, force_terminal=True, color_system=None)
    display = RunDisplay(make_dag(), run_id="r1", console=console, live=True)
    with display:
        display.apply(changed("numbers", TaskState.SUCCESS))
        display.note("Cancelling the run")
    drawn = out.getvalue()
    assert "numbers" in drawn and "success" in drawn and "1/3 finished" in drawn
    assert "Cancelling the run" in drawn
    assert f"{CLOCK} numbers" not in drawn  # no plain lines on a terminal
