"""A try's log stays within `task_log_max_bytes` while the try runs, however output reaches it.

Each task prints about ten times the cap, tells the test so through a FIFO and waits: the test
measures the log then, while the task still runs, and once more after the task has ended,
when the log must be the head of the output, one marker counting what was cut, and its tail.
"""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path

import anyio
import pytest
from taskjobs import DagFile, open_fifo, read_fifo_line

from orchestrator.authoring.tasks import Task
from orchestrator.execution.capped_log import CappedLog, cap_log
from orchestrator.execution.executor import Executor
from orchestrator.execution.jobs import Outcome, TaskJob, TaskOutcome
from orchestrator.loading.importer import load_dag_file

CAP = 64 * 1024
LINES = 10 * CAP // 64
#: What each of the chatty tasks prints: LINES lines of 64 bytes, then "the end".
OUTPUT = "".join(f"line {number:06d} {'x' * 51}\n" for number in range(LINES)) + "the end\n"
MARKER = re.compile(
    rb"\n\[\.\.\. (\d+) bytes cut here: the log was over task_log_max_bytes \(65536\) \.\.\.\]\n"
)

CHATTY = """
import anyio.to_thread

def _say_ready_and_wait(ready, go):
    with open(ready, "w") as pipe:
        pipe.write("ready\\n")
    with open(go) as pipe:
        pipe.readline()

def _print_lines(lines):
    for number in range(lines):
        print(f"line {number:06d} {'x' * 51}")
    sys.stdout.flush()

@task
def chatty(ready, go, lines):
    _print_lines(lines)
    _say_ready_and_wait(ready, go)
    print("the end")
    return "done"

@task
async def chatty_async(ready, go, lines):
    _print_lines(lines)
    await anyio.to_thread.run_sync(_say_ready_and_wait, ready, go)
    print("the end")
    return "done"

@task
def chatty_then_hangs(ready, lines):
    _print_lines(lines)
    with open(ready, "w") as pipe:
        pipe.write("ready\\n")
    threading.Event().wait()

@task
def warm():
    return "warm"

@task
def leaves_a_child_on_its_stdout():
    subprocess.Popen(["sleep", "3606"])  # holds the pipe behind fds 1 and 2
    return "done"

@task
def leaves_a_child_printing_without_end(started):
    os.mkfifo(started)
    subprocess.Popen(["sh", "-c", f"echo > {started}; exec yes"])
    with open(started) as pipe:  # returns once `yes` is about to start
        pipe.read()
    return "done"
"""

SHELL_DAG = """
from orchestrator import DAG, Shell

with DAG("jobs"):
    Shell(
        "yes line | head -c {size} >&2; echo ready > {ready}; read go < {go}; echo the end",
        task_id="yes",
    )
"""


class Handshake:
    """Two FIFOs: the task says it is ready on one and waits for the test's go on the other."""

    def __init__(self, folder: Path) -> None:
        self.ready_path, self.go_path = folder / "ready", folder / "go"
        self.ready, self.go = open_fifo(self.ready_path), open_fifo(self.go_path)

    async def wait_ready(self) -> None:
        with anyio.fail_after(60):
            assert await read_fifo_line(self.ready) == "ready"

    def let_go(self) -> None:
        os.write(self.go, b"go\n")

    def close(self) -> None:
        os.close(self.ready)
        os.close(self.go)


async def run_with_handshake(
    job: TaskJob, task: Task, handshake: Handshake, log: Path
) -> tuple[int, TaskOutcome]:
    """Run the try; return the log's size when the task said it was ready, and the outcome."""
    outcomes: list[TaskOutcome] = []
    async with Executor.open(slots=1) as executor, anyio.create_task_group() as group:

        async def run() -> None:
            outcomes.append(await executor.execute(job, task))

        group.start_soon(run)
        await handshake.wait_ready()
        size_while_running = log.stat().st_size
        handshake.let_go()
    return size_while_running, outcomes[0]


def capped_tail(data: bytes, output: bytes) -> bytes:
    """Check `data` is the head of `output`, one marker and a tail of it; return the tail."""
    assert len(data) <= CAP
    head = data[: CAP // 2]
    assert head == output[: CAP // 2]
    found = MARKER.match(data, CAP // 2)
    assert found is not None, data[CAP // 2 : CAP // 2 + 200]
    tail = data[found.end() :]
    assert MARKER.search(tail) is None
    assert int(found.group(1)) + len(head) + len(tail) == len(output)
    assert output.endswith(tail)
    return tail


@pytest.mark.parametrize(
    ("task_id", "in_process"),
    [("chatty", False), ("chatty", True), ("chatty_async", True)],
    ids=["worker-process", "thread", "async"],
)
async def test_a_task_printing_ten_times_the_cap_keeps_its_log_within_it_while_it_runs(
    tmp_path: Path, task_id: str, in_process: bool
) -> None:
    dag_file = DagFile(tmp_path, CHATTY)
    handshake = Handshake(tmp_path)
    paths = str(handshake.ready_path), str(handshake.go_path)
    job = dag_file.job(task_id, *paths, LINES, in_process=in_process, log_max_bytes=CAP)
    try:
        size, outcome = await run_with_handshake(
            job, dag_file.task(task_id), handshake, dag_file.log_path(task_id)
        )
    finally:
        handshake.close()
    assert CAP // 2 <= size <= CAP
    assert outcome == TaskOutcome(status=Outcome.SUCCESS, result_json='"done"')
    tail = capped_tail(dag_file.log_path(task_id).read_bytes(), OUTPUT.encode())
    assert tail.endswith(b"line 010239 " + b"x" * 51 + b"\nthe end\n")


async def test_a_subprocess_writing_to_the_inherited_stderr_is_held_to_the_cap(
    tmp_path: Path,
) -> None:
    handshake = Handshake(tmp_path)
    shell_file = tmp_path / "dag_shell.py"
    size = 10 * CAP
    shell_file.write_text(
        SHELL_DAG.format(size=size, ready=handshake.ready_path, go=handshake.go_path)
    )
    task = load_dag_file(shell_file).dags["jobs"].tasks["yes"]
    dag_file = DagFile(tmp_path, "")
    job = dataclasses.replace(dag_file.job("yes", log_max_bytes=CAP), fileloc=str(shell_file))
    try:
        size_while_running, outcome = await run_with_handshake(
            job, task, handshake, dag_file.log_path("yes")
        )
    finally:
        handshake.close()
    assert CAP // 2 <= size_while_running <= CAP
    assert outcome == TaskOutcome(status=Outcome.SUCCESS, result_json='"the end"')
    output = (b"line\n" * size)[:size] + b"the end\n"
    capped_tail(dag_file.log_path("yes").read_bytes(), output)


async def test_a_try_killed_by_its_timeout_leaves_a_capped_readable_log(tmp_path: Path) -> None:
    dag_file = DagFile(tmp_path, CHATTY)
    ready = open_fifo(tmp_path / "ready")
    ready_path = str(tmp_path / "ready")
    job = dag_file.job("chatty_then_hangs", ready_path, LINES, timeout=1, log_max_bytes=CAP)
    try:
        async with Executor.open(slots=1) as executor:
            # A warm worker has imported the file, so the 1 s go to the task itself.
            await executor.execute(dag_file.job("warm"), dag_file.task("warm"))
            async with anyio.create_task_group() as group:
                outcomes: list[TaskOutcome] = []

                async def run() -> None:
                    outcomes.append(await executor.execute(job, dag_file.task(job.task_id)))

                group.start_soon(run)
                with anyio.fail_after(60):
                    assert await read_fifo_line(ready) == "ready"
    finally:
        os.close(ready)
    notice = b"timed out after 1 s (execution_timeout)\n"
    assert outcomes == [TaskOutcome(status=Outcome.FAILED, error=notice.decode().strip())]
    data = dag_file.log_path(job.task_id).read_bytes()
    assert data.endswith(notice)
    # Killed with the worker, the reader may not have copied the pipe's last bytes: the tail
    # is a recent stretch of the output, not necessarily its very end.
    head, found = data[: CAP // 2], MARKER.match(data, CAP // 2)
    assert len(data) <= CAP + len(notice)
    assert head == OUTPUT.encode()[: CAP // 2]
    assert found is not None
    assert data[found.end() : -len(notice)] in OUTPUT.encode()


@pytest.mark.parametrize(
    "task_id", ["leaves_a_child_on_its_stdout", "leaves_a_child_printing_without_end"]
)
async def test_a_background_child_holding_the_log_pipe_does_not_keep_the_try_running(
    tmp_path: Path, task_id: str
) -> None:
    dag_file = DagFile(tmp_path, CHATTY)
    async with Executor.open(slots=1) as executor:
        with anyio.fail_after(30):  # the child sleeps for an hour
            arguments = [str(tmp_path / "started")] if "without_end" in task_id else []
            job = dag_file.job(task_id, *arguments, log_max_bytes=CAP)
            outcome = await executor.execute(job, dag_file.task(task_id))
    assert outcome == TaskOutcome(status=Outcome.SUCCESS, result_json='"done"')
    log = dag_file.log_path(task_id)  # made by its first byte: `yes` may not have written yet
    assert not log.exists() or log.stat().st_size <= CAP
    if "without_end" not in task_id:
        assert not log.exists()


def test_a_capped_log_never_passes_its_cap_as_it_is_written(tmp_path: Path) -> None:
    path = tmp_path / "try.log"
    output = b"".join(f"{number:08d}\n".encode() for number in range(100_000))
    log = CappedLog(os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND), CAP)
    with log:
        for start, size in _chunks(len(output)):
            log.write(output[start : start + size])
            assert path.stat().st_size <= CAP
    capped_tail(path.read_bytes(), output)


def test_cap_log_after_a_capped_run_keeps_one_marker_counting_every_cut(tmp_path: Path) -> None:
    path = tmp_path / "try.log"
    output = b"".join(f"{number:08d}\n".encode() for number in range(100_000))
    with CappedLog(os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND), CAP) as log:
        log.write(output)
    with path.open("ab") as engine:  # the engine appends its own line after the try
        engine.write(b"x" * CAP)
    assert cap_log(str(path), CAP) > 0
    capped_tail(path.read_bytes(), output + b"x" * CAP)


def _chunks(total: int) -> list[tuple[int, int]]:
    """(start, size) pieces of `total` bytes, of sizes from 1 byte to twice the cap."""
    sizes = [1, 100, 4096, 70_000, 2 * CAP, 7]
    pieces, start, index = [], 0, 0
    while start < total:
        size = sizes[index % len(sizes)]
        pieces.append((start, size))
        start, index = start + size, index + 1
    return pieces
