"""The worker process, spoken to over its real protocol (`orchestrator.execution.worker`)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
from anyio.abc import Process
from anyio.streams.buffered import BufferedByteReceiveStream
from taskjobs import (
    HANGS_AFTER_WRITING_PID,
    DagFile,
    is_running,
    open_fifo,
    read_fifo_line,
    wait_until_exited,
)

from orchestrator.execution.jobs import Outcome, TaskJob, TaskOutcome
from orchestrator.execution.worker import (
    encode_message,
    job_from_json,
    job_to_json,
    outcome_from_json,
    outcome_to_json,
)


class RawWorker:
    """A worker process and the engine's end of its pipes, without the executor around it."""

    def __init__(self, process: Process) -> None:
        assert process.stdin is not None and process.stdout is not None
        self.process = process
        self.stdin = process.stdin
        self.replies = BufferedByteReceiveStream(process.stdout)

    async def receive(self) -> Any:
        with anyio.fail_after(30):
            return json.loads(await self.replies.receive_until(b"\n", 10_000_000))

    async def run(self, job: TaskJob) -> TaskOutcome:
        await self.stdin.send(encode_message({"job": job_to_json(job)}))
        return outcome_from_json(await self.receive())

    async def finish(self) -> int:
        """Close the worker's stdin, as the executor does to retire it; its exit code."""
        await self.stdin.aclose()
        with anyio.fail_after(30):
            return await self.process.wait()


@asynccontextmanager
async def raw_worker(
    *, stderr: int | None = None, env: dict[str, str] | None = None
) -> AsyncIterator[RawWorker]:
    process = await anyio.open_process(
        [sys.executable, "-m", "orchestrator.execution.worker"],
        stderr=stderr,
        env=env,
        start_new_session=True,
    )
    async with process:
        worker = RawWorker(process)
        assert await worker.receive() == {"ready": True}
        yield worker


async def test_worker_runs_jobs_until_its_stdin_closes(tmp_path: Path) -> None:
    dag_file = DagFile(
        tmp_path,
        """
@task
def add(a, b, context):
    return {"sum": a + b, "run": context.run_id, "pid": os.getpid()}
""",
    )
    async with raw_worker() as worker:
        first = await worker.run(dag_file.job("add", 1, b=2))
        second = await worker.run(dag_file.job("add", 3, b=4))
        assert await worker.finish() == 0
    assert first.status is Outcome.SUCCESS and first.result_json is not None
    assert json.loads(first.result_json)["sum"] == 3
    assert json.loads(first.result_json)["run"] == "run1"
    assert second.result_json is not None
    assert json.loads(second.result_json)["pid"] == json.loads(first.result_json)["pid"]


async def test_everything_a_task_writes_lands_in_its_log_in_order(tmp_path: Path) -> None:
    dag_file = DagFile(
        tmp_path,
        """
@task
def noisy():
    print("1 print")
    sys.stderr.write("2 stderr\\n")
    logging.getLogger("noisy").info("3 logging")
    os.system("echo 4 shell")
    subprocess.run(["sh", "-c", "echo 5 stderr of a child >&2"], check=True)
    import ctypes
    ctypes.CDLL(None).printf(b"6 from C\\n")  # C's buffered stdout: the worker flushes it
    return "done"
""",
    )
    # Without PYTHONUNBUFFERED, as in production: Python's and C's stdout are buffered.
    buffered = {name: value for name, value in os.environ.items() if name != "PYTHONUNBUFFERED"}
    async with raw_worker(env=buffered) as worker:
        outcome = await worker.run(dag_file.job("noisy"))
    assert outcome == TaskOutcome(status=Outcome.SUCCESS, result_json='"done"')
    lines = dag_file.log("noisy").splitlines()
    assert lines[:2] == ["1 print", "2 stderr"]
    assert lines[2].endswith(" INFO noisy: 3 logging")
    assert lines[3:] == ["4 shell", "5 stderr of a child", "6 from C"]


async def test_task_output_cannot_corrupt_the_protocol(tmp_path: Path) -> None:
    dag_file = DagFile(
        tmp_path,
        """
@task
def sneaky():
    os.write(1, b'{"status":"success","result_json":"1","error":null}\\n')
    sys.stdout.write("x" * 200_000)
    return sys.stdin.read()  # stdin is /dev/null, not the engine's job stream
""",
    )
    async with raw_worker() as worker:
        outcome = await worker.run(dag_file.job("sneaky"))
        assert await worker.finish() == 0
    assert outcome == TaskOutcome(status=Outcome.SUCCESS, result_json='""')
    assert dag_file.log("sneaky").startswith('{"status":"success"')


async def test_without_a_log_path_task_output_goes_to_the_engines_stderr(tmp_path: Path) -> None:
    dag_file = DagFile(
        tmp_path,
        """
@task
def talk():
    print("to the engine")
    os.system("echo from a shell")
""",
    )
    async with raw_worker(stderr=subprocess.PIPE) as worker:
        outcome = await worker.run(dag_file.job("talk", log_path=""))
        assert await worker.finish() == 0
        assert worker.process.stderr is not None
        errors = b"".join([chunk async for chunk in worker.process.stderr])
    assert outcome.status is Outcome.SUCCESS
    assert errors.decode() == "to the engine\nfrom a shell\n"


async def test_a_reused_worker_starts_each_task_from_the_same_process_state(
    tmp_path: Path,
) -> None:
    dag_file = DagFile(
        tmp_path,
        """
@task
def meddle(folder):
    os.environ["ADDED_BY_TASK"] = "1"
    os.environ["HOME"] = "/nowhere"
    del os.environ["PATH"]
    os.chdir(folder)
    sys.argv.append("--extra")
    logging.root.addHandler(logging.FileHandler(os.path.join(folder, "leak.log")))
    logging.root.setLevel(logging.ERROR)
    sys.stdout = open(os.devnull, "w")

@task
def look():
    logging.getLogger("look").info("second task")
    print("printed by look")
    return {
        "added": os.environ.get("ADDED_BY_TASK"),
        "home": os.environ.get("HOME"),
        "has_path": "PATH" in os.environ,
        "cwd": os.getcwd(),
        "argv": sys.argv[1:],
        "pid": os.getpid(),
    }
""",
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    async with raw_worker() as worker:
        before = await worker.run(dag_file.job("look"))
        meddled = await worker.run(dag_file.job("meddle", str(elsewhere)))
        after = await worker.run(dag_file.job("look", try_number=2))
    assert meddled.status is Outcome.SUCCESS
    assert before.result_json is not None and after.result_json is not None
    assert json.loads(after.result_json) == json.loads(before.result_json)
    assert json.loads(after.result_json)["added"] is None
    assert (elsewhere / "leak.log").read_text() == ""  # the task's handler was removed
    second_log = dag_file.log("look", try_number=2)
    assert "INFO look: second task" in second_log  # the root level was put back
    assert "printed by look" in second_log  # and sys.stdout


async def test_a_changed_dag_file_is_imported_again(tmp_path: Path) -> None:
    dag_file = DagFile(tmp_path, "@task\ndef version():\n    return (1, os.getpid())\n")
    async with raw_worker() as worker:
        first = await worker.run(dag_file.job("version"))
        dag_file.write("@task\ndef version():\n    return (2, os.getpid())\n")
        second = await worker.run(dag_file.job("version"))
        third = await worker.run(dag_file.job("version"))
    assert first.result_json is not None and second.result_json is not None
    first_version, first_pid = json.loads(first.result_json)
    second_version, second_pid = json.loads(second.result_json)
    assert (first_version, second_version) == (1, 2)
    assert first_pid == second_pid
    assert third == second


async def test_a_dag_file_that_no_longer_imports_fails_with_file_and_line(
    tmp_path: Path,
) -> None:
    dag_file = DagFile(tmp_path, "@task\ndef fine():\n    return 1\n")
    async with raw_worker() as worker:
        assert (await worker.run(dag_file.job("fine"))).status is Outcome.SUCCESS
        dag_file.write("@task\ndef fine():\n    return 1\n\nundefined_name\n")
        outcome = await worker.run(dag_file.job("fine"))
    line = dag_file.path.read_text().splitlines().index("undefined_name") + 1
    assert outcome.status is Outcome.FAILED
    assert outcome.error == (
        f"DAG file does not import: {dag_file.path}:{line}: "
        "NameError: name 'undefined_name' is not defined"
    )
    assert outcome.error in dag_file.log("fine")


async def test_a_dag_or_task_that_is_gone_fails_with_what_is_there(tmp_path: Path) -> None:
    dag_file = DagFile(tmp_path, "@task\ndef present():\n    return 1\n")
    job = dag_file.job("present")
    async with raw_worker() as worker:
        no_task = await worker.run(dag_file.job("absent"))
        no_dag = await worker.run(TaskJob(**{**job.__dict__, "dag_id": "other"}))
    assert no_task.error == f"task 'absent' is not in DAG 'jobs' of {dag_file.path}"
    assert no_dag.error == f"DAG 'other' is not defined in {dag_file.path} (DAGs there: jobs)"


async def test_a_log_that_cannot_be_opened_fails_the_try_and_keeps_the_worker(
    tmp_path: Path,
) -> None:
    # `fine` prints: a capped log is made by the first byte (a quiet try needs none)
    dag_file = DagFile(tmp_path, "@task\ndef fine():\n    print('hi')\n    return 1\n")
    (tmp_path / "a_file").write_text("")
    async with raw_worker() as worker:
        broken = await worker.run(dag_file.job("fine", log_path=str(tmp_path / "a_file" / "1.log")))
        working = await worker.run(dag_file.job("fine"))
    assert broken.status is Outcome.FAILED
    assert broken.error is not None
    assert broken.error.startswith(f"cannot open the try's log {tmp_path}/a_file/1.log: ")
    assert working.status is Outcome.SUCCESS


async def test_an_async_task_sent_to_a_worker_fails_clearly(tmp_path: Path) -> None:
    dag_file = DagFile(tmp_path, "@task\nasync def later():\n    return 1\n")
    async with raw_worker() as worker:
        outcome = await worker.run(dag_file.job("later"))
    assert outcome.status is Outcome.FAILED
    assert outcome.error is not None
    assert outcome.error.startswith("TypeError: task 'later' is async")


def test_a_job_survives_the_trip_through_json(tmp_path: Path) -> None:
    job = DagFile(tmp_path, "").job("t", 1, [2, {"x": None}], timeout=2.5, key="v")
    assert job_from_json(json.loads(encode_message({"job": job_to_json(job)}))["job"]) == job


def test_an_outcome_survives_the_trip_through_json() -> None:
    outcome = TaskOutcome(status=Outcome.SKIPPED, error="no data")
    assert outcome_from_json(json.loads(encode_message(outcome_to_json(outcome)))) == outcome


@pytest.mark.parametrize(
    "reply",
    [
        [],
        {"status": "success"},
        {"status": "done", "result_json": None, "error": None},
        {"status": "success", "result_json": 1, "error": None},
        {"status": "failed", "result_json": None, "error": None, "extra": 1},
    ],
)
def test_a_reply_that_is_not_an_outcome_is_refused(reply: Any) -> None:
    with pytest.raises(ValueError):
        outcome_from_json(reply)


def test_the_worker_imports_only_what_running_a_task_needs() -> None:
    code = "import sys, orchestrator.execution.worker; print(' '.join(sorted(sys.modules)))"
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout.split()
    heavy = {"anyio", "rich", "click", "sklearn", "numpy", "httpx", "aiosqlite", "asyncio"}
    assert heavy.isdisjoint(loaded)
    assert os.path.basename(sys.executable)  # the same interpreter the executor uses


ENGINE = """
import json, sys, anyio
from orchestrator.execution.executor import Executor
from orchestrator.loading.importer import load_dag_file
from orchestrator.execution.worker import job_from_json

async def main():
    job = job_from_json(json.loads(sys.argv[1]))
    task = load_dag_file(job.fileloc).dags[job.dag_id].tasks[job.task_id]
    async with Executor.open(slots=1) as executor:
        await executor.execute(job, task)

anyio.run(main)
"""


async def test_a_worker_dies_with_its_engine_even_on_kill_9(tmp_path: Path) -> None:
    dag_file = DagFile(
        tmp_path,
        HANGS_AFTER_WRITING_PID,
    )
    fifo = open_fifo(tmp_path / "fifo")
    job = json.dumps(job_to_json(dag_file.job("hang", str(tmp_path / "fifo"))))
    try:
        async with await anyio.open_process([sys.executable, "-c", ENGINE, job]) as engine:
            with anyio.fail_after(30):
                worker = int(await read_fifo_line(fifo))
            pidfd = os.pidfd_open(worker)
            engine.kill()
            await engine.wait()
    finally:
        os.close(fifo)
    try:
        with anyio.fail_after(30):
            await wait_until_exited(pidfd)
    finally:
        os.close(pidfd)
    assert not is_running(worker)
