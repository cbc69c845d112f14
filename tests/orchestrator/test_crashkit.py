"""The crash harness itself: crash points, the store invariants, and the daemon helpers."""

from __future__ import annotations

import ast
import itertools
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import anyio
import anyio.to_thread
import pytest
from crashkit import (
    MARK_VARIABLE,
    DaemonProcess,
    check_invariants,
    new_marker,
    orphans,
    ping,
    wait_until,
)

import orchestrator
from orchestrator.crashpoints import (
    CRASH_AT_VARIABLE,
    CRASH_POINTS,
    check_crash_setting,
    parse_crash_setting,
)
from orchestrator.daemon.control import control_path, serve_control
from orchestrator.errors import ConfigError
from orchestrator.state import RunState, TaskState
from orchestrator.store import RunRecord, TaskInstanceRecord, TryRecord, WriteBatch, open_store
from orchestrator.store.records import EventRecord

NOW = 1_800_000_000.0

# -- databases built by the real store -------------------------------------------------------------


def _event_run(batch: WriteBatch, run_id: str, key: str, tasks: tuple[str, ...]) -> None:
    """A queued event run with its event row, committed together as the engine does."""
    run = RunRecord(
        run_id=run_id,
        dag_id="train",
        state=RunState.QUEUED,
        conf={"path": key},
        run_type="event",
        dedup_key=key,
        queued_at=NOW,
    )
    batch.create_run(run, [TaskInstanceRecord(run_id=run_id, task_id=task) for task in tasks])
    event = EventRecord(
        dag_id="train", dedup_key=key, payload={"path": key}, received_at=NOW, run_id=run_id
    )
    batch.add_events([event])


def _succeed(batch: WriteBatch, run_id: str, task_id: str) -> None:
    """One task instance through its states and one successful try."""
    key = (run_id, task_id, -1)
    path = [TaskState.NONE, TaskState.SCHEDULED, TaskState.QUEUED, TaskState.RUNNING]
    for old, new in itertools.pairwise(path):
        batch.set_task_state(key, old, new, try_number=1)
    attempt = TryRecord(
        run_id=run_id,
        task_id=task_id,
        map_index=-1,
        try_number=1,
        state=TaskState.RUNNING,
        started_at=NOW,
        log_path=f"logs/{run_id}/{task_id}/1.log",
    )
    batch.start_try(attempt)
    batch.end_try(key, 1, TaskState.SUCCESS, at=NOW + 1, error=None)
    batch.set_task_state(key, TaskState.RUNNING, TaskState.SUCCESS, ended_at=NOW + 1)


async def _build_store(state_dir: Path) -> Path:
    """A finished run of two tasks and a run still running; the database file's path."""
    async with open_store(state_dir) as store:
        created = WriteBatch()
        _event_run(created, "done", "data/a.csv@1", ("validate", "fit"))
        _event_run(created, "busy", "data/b.csv@1", ("validate",))
        await store.commit(created)
        progress = WriteBatch()
        for run_id in ("done", "busy"):
            progress.set_run_state(run_id, RunState.QUEUED, RunState.RUNNING, at=NOW)
        _succeed(progress, "done", "validate")
        _succeed(progress, "done", "fit")
        progress.set_run_state("done", RunState.RUNNING, RunState.SUCCESS, at=NOW + 2)
        await store.commit(progress)
        return Path(store.path)


def _finish_busy_run(db_path: Path) -> None:
    _write(
        db_path,
        "UPDATE runs SET state = 'success' WHERE run_id = 'busy'",
        "UPDATE task_instances SET state = 'skipped' WHERE run_id = 'busy'",
    )


def _write(db_path: Path, *statements: str) -> None:
    """Raw writes behind the store's back (foreign keys off: corruption is the point)."""
    with closing(sqlite3.connect(db_path)) as connection:
        for statement in statements:
            connection.execute(statement)
        connection.commit()


async def test_a_sound_store_breaks_no_invariant(tmp_path: Path) -> None:
    db_path = await _build_store(tmp_path / "state")
    assert check_invariants(db_path, settled=False) == []
    _finish_busy_run(db_path)
    assert check_invariants(db_path, settled=True) == []


async def test_a_store_in_use_can_be_checked(tmp_path: Path) -> None:
    # As after a kill -9: the write-ahead log holds the last commits, and the checker sees them.
    async with open_store(tmp_path / "state") as store:
        batch = WriteBatch()
        _event_run(batch, "new", "data/n.csv@1", ("validate",))
        await store.commit(batch)
        db_path = Path(store.path)
        assert Path(f"{db_path}-wal").exists()
        assert check_invariants(db_path, settled=False) == []
        assert check_invariants(db_path, settled=True) == [
            "run 'new' (DAG 'train') is still 'queued' though everything should be done"
        ]


async def test_unsettled_runs_and_tasks_are_reported_only_once_settled(tmp_path: Path) -> None:
    db_path = await _build_store(tmp_path / "state")
    _write(db_path, "UPDATE task_tries SET state = 'running' WHERE task_id = 'fit'")
    _write(db_path, "UPDATE task_instances SET state = 'running' WHERE task_id = 'fit'")

    assert check_invariants(db_path, settled=False) == []
    assert check_invariants(db_path, settled=True) == [
        "run 'busy' (DAG 'train') is still 'running' though everything should be done",
        "task instance fit of run 'done' is still 'running' in a run that is 'success'",
        "try 1 of task instance fit of run 'done' is still 'running'",
    ]


@pytest.mark.parametrize(
    ("corruption", "problem"),
    [
        pytest.param(
            "INSERT INTO task_tries (run_id, task_id, map_index, try_number, state, started_at,"
            " log_path) VALUES ('done', 'fit', -1, 2, 'success', 0, 'x.log')",
            "task instance fit of run 'done' has more than one successful try: tries 1, 2",
            id="duplicate-success-try",
        ),
        pytest.param(
            "UPDATE task_tries SET state = 'failed' WHERE task_id = 'fit'",
            "task instance fit of run 'done' is in state success with 0 successful tries, "
            "not exactly one",
            id="success-without-a-successful-try",
        ),
        pytest.param(
            "UPDATE events SET run_id = NULL WHERE run_id = 'done'",
            "run 'done' (DAG 'train') is an event run, but no event names it",
            id="event-run-without-its-event",
        ),
        pytest.param(
            "UPDATE events SET run_id = 'ghost' WHERE run_id = 'done'",
            "event 1 (DAG 'train', dedup key 'data/a.csv@1') names run 'ghost', which does "
            "not exist",
            id="event-naming-a-missing-run",
        ),
    ],
)
async def test_each_broken_invariant_is_reported(
    tmp_path: Path, corruption: str, problem: str
) -> None:
    db_path = await _build_store(tmp_path / "state")
    _write(db_path, corruption)
    assert problem in check_invariants(db_path, settled=False)


async def test_an_event_without_a_run_is_allowed_until_settled(tmp_path: Path) -> None:
    db_path = await _build_store(tmp_path / "state")
    _finish_busy_run(db_path)
    _write(
        db_path,
        "INSERT INTO events (dag_id, dedup_key, payload, received_at)"
        " VALUES ('train', 'data/c.csv@1', '{}', 0)",
    )
    assert check_invariants(db_path, settled=False) == []
    assert check_invariants(db_path, settled=True) == [
        "event 3 (DAG 'train', dedup key 'data/c.csv@1') has no run"
    ]


async def test_a_dangling_foreign_key_is_reported(tmp_path: Path) -> None:
    db_path = await _build_store(tmp_path / "state")
    _write(db_path, "DELETE FROM task_instances WHERE task_id = 'fit'")  # its tries stay
    assert check_invariants(db_path, settled=False) == [
        "foreign key: task_tries row 2 refers to a missing row of task_instances"
    ]


async def test_a_damaged_file_is_reported(tmp_path: Path) -> None:
    db_path = await _build_store(tmp_path / "state")
    copy = tmp_path / "copy.db"
    shutil.copyfile(db_path, copy)
    with closing(sqlite3.connect(copy)) as connection:
        page_size = connection.execute("PRAGMA page_size").fetchone()[0]
        sql = "SELECT rootpage FROM sqlite_schema WHERE name = 'runs_by_state'"
        page = connection.execute(sql).fetchone()[0]
    with open(copy, "r+b") as file:
        file.seek((page - 1) * page_size)
        file.write(b"\xde\xad\xbe\xef" * (page_size // 4))

    problems = check_invariants(copy, settled=True)

    assert problems, "a damaged page went unnoticed"
    assert all(p.startswith(("integrity check: ", "the database ")) for p in problems), problems
    assert check_invariants(db_path, settled=False) == []  # the original is untouched


def test_a_missing_database_is_reported_not_created(tmp_path: Path) -> None:
    missing = tmp_path / "nothing.db"
    [problem] = check_invariants(missing, settled=True)
    assert problem.startswith(f"the database {missing} cannot be read: ")
    assert not missing.exists()


# -- crash points ----------------------------------------------------------------------------------

_TWO_PASSES = """
from orchestrator.crashpoints import crashpoint
crashpoint("event_received")  # another point: not counted
crashpoint("task_succeeded")
print("after the first pass")
crashpoint("task_succeeded")
print("after the second pass")
"""


def _run_python(code: str, crash_at: str) -> subprocess.CompletedProcess[str]:
    # Without PYTHONUNBUFFERED: output a crash point must flush before it dies.
    environment = {name: value for name, value in os.environ.items() if name != "PYTHONUNBUFFERED"}
    environment[CRASH_AT_VARIABLE] = crash_at
    return subprocess.run(
        [sys.executable, "-c", code],
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_a_crash_point_kills_the_process_the_nth_time_it_is_reached() -> None:
    finished = _run_python(_TWO_PASSES, "task_succeeded:2")
    assert finished.returncode == -signal.SIGKILL
    assert finished.stdout == "after the first pass\n"
    assert "crash point 'task_succeeded' reached" in finished.stderr


def test_a_crash_point_without_a_count_kills_the_first_time() -> None:
    finished = _run_python(_TWO_PASSES, "task_succeeded")
    assert finished.returncode == -signal.SIGKILL
    assert finished.stdout == ""


@pytest.mark.parametrize("crash_at", ["", "schedule_tick", "no_such_point", "task_succeeded:x"])
def test_crash_points_do_nothing_unless_their_turn_comes(crash_at: str) -> None:
    # An invalid setting crashes nothing either: `check_crash_setting` reports it at start.
    finished = _run_python(_TWO_PASSES, crash_at)
    assert (finished.returncode, finished.stderr) == (0, "")
    assert finished.stdout.splitlines() == ["after the first pass", "after the second pass"]


def test_reset_reads_the_setting_again() -> None:
    code = """
import os
from orchestrator import crashpoints
crashpoints.crashpoint("run_committed")  # reads run_committed:2: one pass left
os.environ["ORCHESTRATOR_CRASH_AT"] = ""
crashpoints.reset()
crashpoints.crashpoint("run_committed")
print("survived")
os.environ["ORCHESTRATOR_CRASH_AT"] = "run_committed"
crashpoints.reset()
crashpoints.crashpoint("run_committed")
print("not reached")
"""
    finished = _run_python(code, "run_committed:2")
    assert (finished.returncode, finished.stdout) == (-signal.SIGKILL, "survived\n")


def test_an_unknown_crash_point_is_a_config_error_naming_the_known_ones(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(CRASH_AT_VARIABLE, "task_succeded:2")
    with pytest.raises(ConfigError) as caught:
        check_crash_setting()
    message = str(caught.value)
    assert "'task_succeded:2' names no crash point" in message
    assert all(name in message for name in CRASH_POINTS)


@pytest.mark.parametrize("count", ["0", "-1", "two", "", "1.5"])
def test_a_bad_count_is_a_config_error(count: str) -> None:
    with pytest.raises(ConfigError, match="a whole number from 1"):
        parse_crash_setting(f"task_dispatched:{count}")


def test_good_settings_parse(monkeypatch: pytest.MonkeyPatch) -> None:
    assert parse_crash_setting("shutdown_grace") == ("shutdown_grace", 1)
    assert parse_crash_setting("shutdown_grace:12") == ("shutdown_grace", 12)
    assert parse_crash_setting("  ") is None
    monkeypatch.delenv(CRASH_AT_VARIABLE, raising=False)
    check_crash_setting()  # unset is fine


def test_the_code_calls_only_known_crash_points() -> None:
    # A misspelt point in the code would never fire: the crash test of it would test nothing.
    package = Path(orchestrator.__file__).parent
    for path in package.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Call) and _called_name(node) == "crashpoint":
                [argument] = node.args
                where = f"{path}:{node.lineno}"
                assert isinstance(argument, ast.Constant), f"{where}: not a literal name"
                assert argument.value in CRASH_POINTS, f"{where}: {argument.value!r} is unknown"


def _called_name(call: ast.Call) -> str | None:
    """`f` for `f(...)` and for `module.f(...)`."""
    function = call.func
    if isinstance(function, ast.Attribute):
        return function.attr
    return function.id if isinstance(function, ast.Name) else None


# -- processes and the daemon ----------------------------------------------------------------------


def test_orphans_lists_live_marked_processes_and_skips_zombies() -> None:
    marker = new_marker()
    environment = {**os.environ, MARK_VARIABLE: marker}
    code = "import sys; sys.stdin.read()"
    with subprocess.Popen(
        [sys.executable, "-c", code], env=environment, stdin=subprocess.PIPE
    ) as child:
        assert orphans(marker) == [child.pid]
        assert orphans(new_marker()) == []
        child.kill()
        # Not reaped yet, the child is a zombie for a while: it no longer counts.
        wait_until(lambda: not orphans(marker), 30, "the killed child to be gone")
    assert child.returncode == -signal.SIGKILL


def test_wait_until_returns_the_value_or_fails_naming_what_it_waited_for() -> None:
    values = iter([0, None, "yes"])
    assert wait_until(lambda: next(values), 30, "a value") == "yes"
    with pytest.raises(AssertionError, match="waiting for the impossible"):
        wait_until(lambda: False, 0.05, "the impossible")


def test_a_daemon_that_exits_early_fails_wait_ready_with_its_log(tmp_path: Path) -> None:
    (tmp_path / "dags").mkdir()
    marker = new_marker()
    with DaemonProcess(
        tmp_path / "state", tmp_path / "dags", marker=marker, extra_args=["--no-such-option"]
    ) as daemon:
        with pytest.raises(AssertionError) as caught:
            daemon.wait_ready(60)
        code = daemon.wait_exit(10)
        log = daemon.log_text()
    assert code > 0
    assert f"exited ({code}) before it was ready" in str(caught.value)
    assert log in str(caught.value)  # what the daemon said is in the failure
    assert orphans(marker) == []


async def test_ping_speaks_the_control_protocol(tmp_path: Path) -> None:
    path = control_path(tmp_path)
    seen: list[dict[str, object]] = []

    async def handler(request: dict[str, object]) -> dict[str, object]:
        seen.append(request)
        return {"pid": 1}

    assert not await anyio.to_thread.run_sync(lambda: ping(path, timeout=10))
    async with serve_control(path, handler):
        assert await anyio.to_thread.run_sync(lambda: ping(path, timeout=10))
    assert seen == [{"op": "ping"}]


async def test_a_wrong_answer_to_a_ping_fails_at_once(tmp_path: Path) -> None:
    path = control_path(tmp_path)

    async def handler(request: dict[str, object]) -> dict[str, object]:
        raise ConfigError("not now")

    async with serve_control(path, handler):
        with pytest.raises(AssertionError, match=r"answered a ping with .*'not now'"):
            await anyio.to_thread.run_sync(lambda: ping(path, timeout=10))
