"""Helpers for the crash tests (importable as `crashkit`): the daemon, the invariants, orphans.

A crash test starts the daemon as a real process (`DaemonProcess`), kills it at a crash point
(`ORCHESTRATOR_CRASH_AT`, see `orchestrator.crashpoints`) or with `kill9()`, restarts it, and
then checks the store with `check_invariants` and the machine with `orphans`:

```python
marker = new_marker()
with DaemonProcess(state_dir, dags, marker=marker, crash_at="task_succeeded") as daemon:
    assert daemon.wait_exit(30) == -signal.SIGKILL, daemon.log_text()
with DaemonProcess(state_dir, dags, marker=marker) as daemon:
    daemon.wait_ready(30)
    wait_until(lambda: runs_finished(state_dir), 30, "the run to finish after the restart")
assert check_invariants(state_dir / "orchestrator.db", settled=True) == []
wait_until(lambda: not orphans(marker), 10, "no process of the daemon's to be left")
```

Everything here is synchronous: the daemon is another process, so there is nothing for a
test's event loop to do meanwhile. Waiting across processes has no event to wait on (the
store is a file another process writes, readiness is a socket another process opens), so
the waits here poll in 0.02 s steps, always under a deadline.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import closing
from functools import partial
from pathlib import Path
from types import TracebackType
from typing import IO, Any, TypeVar
from urllib.parse import quote

from orchestrator.crashpoints import CRASH_AT_VARIABLE
from orchestrator.daemon.control import control_path, request_sync
from orchestrator.state import FINISHED_TASK_STATES, RunState

T = TypeVar("T")

#: The environment variable that marks every process a test's daemon starts (see `orphans`).
MARK_VARIABLE = "ORCHESTRATOR_TEST_MARK"
#: How long a polling wait sleeps between two looks at another process's doings.
POLL_STEP = 0.02

# -- waiting -------------------------------------------------------------------------------------


def wait_until(predicate: Callable[[], T], timeout: float, what: str) -> T:
    """Poll `predicate` until it returns something true, and return that; fail after `timeout`.

    For conditions in another process only (there is nothing to wait on there); within one
    process, wait on the event itself.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(POLL_STEP)


# -- processes left behind -------------------------------------------------------------------------


def new_marker() -> str:
    """A fresh value for `MARK_VARIABLE`: no other test's processes carry it."""
    return uuid.uuid4().hex


def orphans(marker: str) -> list[int]:
    """The live processes (zombies aside) whose environment has `MARK_VARIABLE=marker`.

    A daemon started with the marker passes it on to its workers, their guardians and the
    tasks' own subprocesses, so once the daemon is dead this must become empty. A process
    still inside `exec` shows an empty environment for a moment (even after `Popen` returned
    in its parent), so to see a process appear, wait for it with `wait_until`.
    """
    wanted = f"{MARK_VARIABLE}={marker}".encode()
    return sorted(pid for pid in _pids() if _is_alive(pid) and wanted in _environment(pid))


def _pids() -> list[int]:
    return [int(name) for name in os.listdir("/proc") if name.isdecimal()]


def _environment(pid: int) -> list[bytes]:
    """The environment a process started with; empty if it is gone or not ours to read."""
    try:
        return Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:  # gone (FileNotFoundError, ProcessLookupError) or another user's
        return []


def _is_alive(pid: int) -> bool:
    """False for a zombie (dead, waiting for its parent to reap it) or a process gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    # The command name, in parentheses, may itself hold spaces and parentheses.
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


# -- the store's invariants ------------------------------------------------------------------------


def _sql_list(values: Iterable[str]) -> str:
    """`('a', 'b')` for `IN`: our own enum values, never user input, so inlining is safe."""
    return "(" + ", ".join(f"'{value}'" for value in sorted(values)) + ")"


_FINISHED_RUNS = _sql_list(state.value for state in RunState if state.finished)
_FINISHED_TASKS = _sql_list(state.value for state in FINISHED_TASK_STATES)


def check_invariants(db_path: Path, *, settled: bool) -> list[str]:
    """Every broken invariant of the store at `db_path`, one readable line each; [] when sound.

    `settled` says the daemon had time to finish everything (no run or task may be left
    unfinished, every event has its run); unsettled, the store may be caught mid-way, but
    still never inconsistent. The file is opened read-only: checking changes nothing.
    """
    try:
        with closing(_connect_readonly(db_path)) as connection:
            damage = _file_damage(connection)
            if damage:
                return damage  # the rows of a damaged file mean nothing
            return _foreign_key_problems(connection) + _row_problems(connection, settled=settled)
    except sqlite3.Error as error:
        return [f"the database {db_path} cannot be read: {error}"]


def _connect_readonly(db_path: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{quote(str(db_path.resolve()))}?mode=ro", uri=True)


def _file_damage(connection: sqlite3.Connection) -> list[str]:
    rows = connection.execute("PRAGMA integrity_check").fetchall()
    return [f"integrity check: {row[0]}" for row in rows if row[0] != "ok"]


def _foreign_key_problems(connection: sqlite3.Connection) -> list[str]:
    return [
        f"foreign key: {table} row {rowid} refers to a missing row of {parent}"
        for table, rowid, parent, _ in connection.execute("PRAGMA foreign_key_check")
    ]


def _row_problems(connection: sqlite3.Connection, *, settled: bool) -> list[str]:
    checks: list[Callable[[sqlite3.Connection], list[str]]] = [
        _events_with_a_missing_run,
        _duplicate_events,
        _event_runs_without_an_event,
        _task_instances_with_two_successes,
        _successes_without_one_successful_try,
    ]
    if settled:
        checks += [
            _events_without_a_run,
            _unfinished_runs,
            _unfinished_task_instances,
            _tries_left_running,
        ]
    return [problem for check in checks for problem in check(connection)]


def _events_without_a_run(connection: sqlite3.Connection) -> list[str]:
    sql = "SELECT event_id, dag_id, dedup_key FROM events WHERE run_id IS NULL ORDER BY event_id"
    return [
        f"event {event_id} (DAG {dag_id!r}, dedup key {key!r}) has no run"
        for event_id, dag_id, key in connection.execute(sql)
    ]


def _events_with_a_missing_run(connection: sqlite3.Connection) -> list[str]:
    sql = (
        "SELECT event_id, dag_id, dedup_key, run_id FROM events"
        " WHERE run_id IS NOT NULL AND run_id NOT IN (SELECT run_id FROM runs) ORDER BY event_id"
    )
    return [
        f"event {event_id} (DAG {dag_id!r}, dedup key {key!r}) names run {run_id!r}, "
        "which does not exist"
        for event_id, dag_id, key, run_id in connection.execute(sql)
    ]


def _duplicate_events(connection: sqlite3.Connection) -> list[str]:
    sql = (
        "SELECT dag_id, dedup_key, group_concat(event_id, ', ') FROM events"
        " GROUP BY dag_id, dedup_key HAVING count(*) > 1 ORDER BY dag_id, dedup_key"
    )
    return [
        f"events {ids} share DAG {dag_id!r} and dedup key {key!r}: one event, two rows"
        for dag_id, key, ids in connection.execute(sql)
    ]


def _event_runs_without_an_event(connection: sqlite3.Connection) -> list[str]:
    sql = (
        "SELECT run_id, dag_id FROM runs WHERE run_type = 'event' AND run_id NOT IN"
        " (SELECT run_id FROM events WHERE run_id IS NOT NULL) ORDER BY run_id"
    )
    return [
        f"run {run_id!r} (DAG {dag_id!r}) is an event run, but no event names it"
        for run_id, dag_id in connection.execute(sql)
    ]


def _task_instances_with_two_successes(connection: sqlite3.Connection) -> list[str]:
    sql = (
        "SELECT run_id, task_id, map_index, group_concat(try_number, ', ') FROM task_tries"
        " WHERE state = 'success' GROUP BY run_id, task_id, map_index HAVING count(*) > 1"
        " ORDER BY run_id, task_id, map_index"
    )
    return [
        f"{_task(run_id, task_id, map_index)} has more than one successful try: tries {tries}"
        for run_id, task_id, map_index, tries in connection.execute(sql)
    ]


def _successes_without_one_successful_try(connection: sqlite3.Connection) -> list[str]:
    sql = (
        "SELECT run_id, task_id, map_index, (SELECT count(*) FROM task_tries AS try"
        "  WHERE try.run_id = ti.run_id AND try.task_id = ti.task_id"
        "  AND try.map_index = ti.map_index AND try.state = 'success') AS successes"
        " FROM task_instances AS ti WHERE state = 'success' AND successes != 1"
        " ORDER BY run_id, task_id, map_index"
    )
    return [
        f"{_task(run_id, task_id, map_index)} is in state success with {count} successful "
        "tries, not exactly one"
        for run_id, task_id, map_index, count in connection.execute(sql)
    ]


def _unfinished_runs(connection: sqlite3.Connection) -> list[str]:
    sql = (
        f"SELECT run_id, dag_id, state FROM runs WHERE state NOT IN {_FINISHED_RUNS}"
        " ORDER BY run_id"
    )
    return [
        f"run {run_id!r} (DAG {dag_id!r}) is still {state!r} though everything should be done"
        for run_id, dag_id, state in connection.execute(sql)
    ]


def _unfinished_task_instances(connection: sqlite3.Connection) -> list[str]:
    sql = (
        "SELECT ti.run_id, ti.task_id, ti.map_index, ti.state, runs.state"
        " FROM task_instances AS ti JOIN runs USING (run_id)"
        f" WHERE runs.state IN {_FINISHED_RUNS} AND ti.state NOT IN {_FINISHED_TASKS}"
        " ORDER BY ti.run_id, ti.task_id, ti.map_index"
    )
    return [
        f"{_task(run_id, task_id, map_index)} is still {state!r} in a run that is {run_state!r}"
        for run_id, task_id, map_index, state, run_state in connection.execute(sql)
    ]


def _tries_left_running(connection: sqlite3.Connection) -> list[str]:
    """A try still `running` once all is settled was lost: recovery should have ended it."""
    sql = (
        "SELECT run_id, task_id, map_index, try_number FROM task_tries WHERE state = 'running'"
        " ORDER BY run_id, task_id, map_index, try_number"
    )
    return [
        f"try {try_number} of {_task(run_id, task_id, map_index)} is still 'running'"
        for run_id, task_id, map_index, try_number in connection.execute(sql)
    ]


def store_rows(state_dir: Path, sql: str) -> list[tuple[Any, ...]]:
    """The rows of a read-only query on the store in `state_dir`; [] before it exists."""
    database = state_dir / "orchestrator.db"
    if not database.exists():
        return []
    with closing(_connect_readonly(database)) as connection:
        return list(connection.execute(sql))


def _task(run_id: str, task_id: str, map_index: int) -> str:
    index = f"[{map_index}]" if map_index >= 0 else ""
    return f"task instance {task_id}{index} of run {run_id!r}"


# -- the daemon as a process -----------------------------------------------------------------------


class DaemonProcess:
    """`orchestrator daemon` as a real process, with its output in a log file for failures.

    Leaving the `with` block SIGKILLs a daemon still running (a failed test leaves nothing
    behind) and reaps it.
    """

    def __init__(
        self,
        state_dir: Path,
        dags_folder: Path,
        *,
        marker: str,
        crash_at: str | None = None,
        extra_args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        log_path: Path | None = None,
        cwd: Path | None = None,
        nofile: int | None = None,
    ) -> None:
        """`nofile`: the daemon's open-file limit, soft and hard (so it cannot raise it)."""
        self.state_dir = state_dir
        self.log_path = log_path or state_dir.parent / "daemon.log"
        argv = [sys.executable, "-m", "orchestrator", "daemon", "--state-dir", str(state_dir)]
        argv += ["--dags-folder", str(dags_folder), *extra_args]
        environment = _daemon_environment(marker, crash_at, env)
        with open(self.log_path, "a") as log:
            log.write(f"=== {' '.join(argv[1:])} ({CRASH_AT_VARIABLE}={crash_at or ''})\n")
            log.flush()
            self.process = subprocess.Popen(
                argv,
                env=environment,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                cwd=cwd,
                preexec_fn=None if nofile is None else partial(_limit_open_files, nofile),
            )

    def __enter__(self) -> DaemonProcess:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self.process.poll() is None:
            self.kill9()
        self.process.wait()

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def socket_path(self) -> Path:
        """Where the daemon's control socket is, by the rule the daemon itself uses."""
        return control_path(self.state_dir)

    def log_text(self) -> str:
        """Everything the daemons of this log file printed so far."""
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, timeout: float) -> None:
        """Return once the control socket answers a ping; fail at once if the daemon exits."""
        deadline = time.monotonic() + timeout
        while not ping(self.socket_path, timeout=max(deadline - time.monotonic(), POLL_STEP)):
            code = self.process.poll()
            if code is not None:
                raise AssertionError(f"the daemon exited ({code}) before it was ready:\n{self}")
            if time.monotonic() >= deadline:
                raise AssertionError(f"the daemon was not ready within {timeout:g} s:\n{self}")
            time.sleep(POLL_STEP)

    def kill9(self) -> None:
        """SIGKILL the daemon: no grace, no cleanup, as a power cut or the OOM killer."""
        self.process.send_signal(signal.SIGKILL)

    def terminate(self) -> None:
        """SIGTERM the daemon: it should finish or hand back its work and exit."""
        self.process.send_signal(signal.SIGTERM)

    def wait_exit(self, timeout: float) -> int:
        """The daemon's exit code (negative: killed by that signal) once it has exited."""
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"the daemon did not exit within {timeout:g} s:\n{self}") from None

    def __str__(self) -> str:
        return f"daemon pid {self.pid}, log {self.log_path}:\n{self.log_text()}"


def _limit_open_files(limit: int) -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))


def _daemon_environment(
    marker: str, crash_at: str | None, extra: Mapping[str, str] | None
) -> dict[str, str]:
    environment = {**os.environ, **(extra or {}), MARK_VARIABLE: marker, "PYTHONUNBUFFERED": "1"}
    environment.pop(CRASH_AT_VARIABLE, None)  # never one inherited from the test's own shell
    if crash_at is not None:
        environment[CRASH_AT_VARIABLE] = crash_at
    return environment


def ping(socket_path: Path, *, timeout: float) -> bool:
    """True if a daemon answers `{"op": "ping"}` on its control socket; False if none listens.

    A daemon that answers something else than `{"ok": true, ...}` fails the test: it is up,
    but broken, and waiting longer would not help.
    """
    try:
        reply = _request_line(socket_path, {"op": "ping"}, timeout)
    except (FileNotFoundError, ConnectionRefusedError, ConnectionResetError, TimeoutError):
        return False  # not listening yet, just stopped, or too busy to answer in time
    if not isinstance(reply, dict) or reply.get("ok") is not True:
        raise AssertionError(f"the daemon answered a ping with {reply!r}")
    return True


def _request_line(socket_path: Path, request: dict[str, Any], timeout: float) -> Any:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
        client.settimeout(timeout)
        client.connect(str(socket_path))
        client.sendall(json.dumps(request).encode() + b"\n")
        reader: IO[bytes] = client.makefile("rb")
        with reader:
            line = reader.readline(1_000_000)
    if not line:
        raise ConnectionResetError("the daemon closed the connection without a reply")
    return json.loads(line)


def api_url(daemon: DaemonProcess) -> str:
    """Where the daemon's API listens, from its control socket, once it does."""
    daemon.wait_ready(30)

    def url() -> str:  # empty (so false) until the API listens
        return str(request_sync(control_path(daemon.state_dir), {"op": "ping"}).get("api") or "")

    return wait_until(url, 30, f"the API to listen, {daemon}")
