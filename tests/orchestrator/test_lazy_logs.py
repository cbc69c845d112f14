"""A try's log is made by its first byte: a quiet try leaves no file, a failing one says why.

Making a file is the one file-system write a no-op try needs; on ext4 without a journal it
walks past each inode freed in the last minute, 0.03-0.6 ms on this project's VMs. The
contract kept: what a try writes lands in its log (capped), and a log that cannot be made
fails the try with the same words as before, once the try's code has returned.
"""

from __future__ import annotations

import os
from pathlib import Path

import anyio
import pytest
from taskjobs import DagFile

from orchestrator.execution.capped_log import CappedLog, capped_log_made_at_first_write
from orchestrator.execution.executor import Executor
from orchestrator.execution.jobs import Outcome, TaskJob, TaskOutcome

TASKS = """
@task
def quiet():
    return 1

@task
def chatty():
    print("hello")
    return 2
"""

IN_A_WORKER, IN_A_THREAD = False, True


def test_a_log_made_at_first_write_is_made_by_the_first_byte_with_its_folders(
    tmp_path: Path,
) -> None:
    path = tmp_path / "run" / "task.try-1.log"
    log = CappedLog.made_at_first_write(str(path), max_bytes=400)
    assert log.write(b"") == 0
    assert not path.parent.exists()  # nothing written, nothing made
    assert log.write(b"x" * 300) == 300
    assert log.write(b"y" * 300) == 300  # and still held to its cap
    log.close()
    data = path.read_bytes()
    assert len(data) <= 400 and data.startswith(b"x" * 200) and data.endswith(b"\n" + b"y" * 40)


def test_a_log_that_cannot_be_made_loses_the_output_and_says_why(tmp_path: Path) -> None:
    (tmp_path / "a_file").write_text("")
    log = CappedLog.made_at_first_write(str(tmp_path / "a_file" / "1.log"), max_bytes=100)
    assert log.write(b"lost") == 4  # the task is not stopped by its log
    assert isinstance(log.open_error, NotADirectoryError)
    with pytest.raises(NotADirectoryError):
        log.fileno()
    log.close()


def test_the_text_log_raises_at_its_end_when_it_could_not_be_made(tmp_path: Path) -> None:
    (tmp_path / "a_file").write_text("")
    with pytest.raises(NotADirectoryError):
        with capped_log_made_at_first_write(str(tmp_path / "a_file" / "1.log"), 100) as log:
            log.write("printed\n")
    with capped_log_made_at_first_write(str(tmp_path / "a_file" / "2.log"), 100):
        pass  # nothing written: nothing to fail


@pytest.mark.parametrize("in_process", [IN_A_WORKER, IN_A_THREAD], ids=["worker", "thread"])
async def test_a_quiet_try_leaves_no_log_and_a_chatty_one_its_output(
    tmp_path: Path, in_process: bool
) -> None:
    dag_file = DagFile(tmp_path, TASKS)
    async with Executor.open(slots=1) as executor:
        for name in ("quiet", "chatty"):
            job = dag_file.job(name, in_process=in_process)
            outcome = await executor.execute(job, dag_file.task(name))
            assert outcome.status is Outcome.SUCCESS, outcome.error
            # the same, started at once (no task of its own) when a slot is free
            again = dag_file.job(name, in_process=in_process, try_number=2)
            assert (await start_now(executor, again, dag_file, name)).status is Outcome.SUCCESS
    for try_number in (1, 2):
        assert not dag_file.log_path("quiet", try_number).exists()
        assert dag_file.log("chatty", try_number) == "hello\n"


async def test_an_async_try_still_gets_its_log_before_it_runs(tmp_path: Path) -> None:
    """Async tries run on the loop: their log is opened beforehand, off the loop."""
    dag_file = DagFile(tmp_path, "@task\nasync def quiet():\n    return 1\n")
    async with Executor.open(slots=1) as executor:
        outcome = await executor.execute(dag_file.job("quiet"), dag_file.task("quiet"))
    assert outcome.status is Outcome.SUCCESS
    assert dag_file.log("quiet") == ""


@pytest.mark.parametrize(
    ("in_process", "words"),
    [(IN_A_WORKER, "cannot open the try's log"), (IN_A_THREAD, "cannot write the try's log")],
    ids=["worker", "thread"],
)
async def test_a_log_that_cannot_be_made_fails_a_try_that_writes_and_keeps_the_executor(
    tmp_path: Path, in_process: bool, words: str
) -> None:
    dag_file = DagFile(tmp_path, TASKS)
    (tmp_path / "a_file").write_text("")
    broken_path = str(tmp_path / "a_file" / "1.log")
    async with Executor.open(slots=1) as executor:

        async def run(name: str, log_path: str | None = None, cap: int = 4096) -> TaskOutcome:
            job = dag_file.job(name, in_process=in_process, log_path=log_path, log_max_bytes=cap)
            return await executor.execute(job, dag_file.task(name))

        chatty = await run("chatty", broken_path)
        quiet = await run("quiet", broken_path)
        uncapped = await run("quiet", broken_path, cap=0)  # opened before the try, as before
        working = await run("chatty")
    assert chatty.status is Outcome.FAILED and chatty.error is not None
    assert chatty.error.startswith(f"{words} {broken_path}: NotADirectoryError")
    assert quiet == TaskOutcome(status=Outcome.SUCCESS, result_json="1")
    assert uncapped.status is Outcome.FAILED
    assert working == TaskOutcome(status=Outcome.SUCCESS, result_json="2")
    assert dag_file.log("chatty") == "hello\n"
    assert os.listdir(tmp_path / "logs" / "jobs" / "run1") == ["chatty"]


async def start_now(executor: Executor, job: TaskJob, dag_file: DagFile, name: str) -> TaskOutcome:
    """`Executor.start_now` (a try without a task of its own), waited for."""
    outcomes: list[TaskOutcome] = []
    arrived = anyio.Event()

    def report(outcome: TaskOutcome, log_capped: bool) -> None:
        outcomes.append(outcome)
        arrived.set()

    if executor.start_now(job, dag_file.task(name), report) is None:
        return await executor.execute(job, dag_file.task(name))
    await arrived.wait()
    return outcomes[0]
