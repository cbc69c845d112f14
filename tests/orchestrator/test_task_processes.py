"""The processes a try starts end with the try: on success, on cancel, on timeout.

A shell task starts `sleep` children three ways: in its process group, in a session of its own
(`setsid`), and double-forked (its parent exits, so it has none). However the try ends, none
of them may outlive it: the worker that ran it is reused, and a leftover would run beside the
next try. Also here: a background child that holds the task's stdout open does not keep the
task running, and a task that closes the worker's file descriptors is told so.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import anyio
import pytest
from taskjobs import (
    LOG_MAX_BYTES,
    DagFile,
    is_running,
    open_fifo,
    read_fifo_line,
    wait_until_exited,
)

from orchestrator.authoring.context import TaskContext
from orchestrator.authoring.tasks import Task
from orchestrator.execution.executor import Executor
from orchestrator.execution.jobs import Outcome, TaskJob, TaskOutcome
from orchestrator.loading.importer import load_dag_file

pytestmark = pytest.mark.slow

# Each child writes its own pid once it runs where it will stay, then becomes `sleep`.
SPAWN = """
sh -c 'echo $$ >> {pids}; exec sleep 3601' >/dev/null 2>&1 &
setsid sh -c 'echo $$ >> {pids}; exec sleep 3602' >/dev/null 2>&1 &
(sh -c 'echo $$ >> {pids}; exec sleep 3603' >/dev/null 2>&1 &)
until [ "$(wc -l < {pids})" -ge 3 ]; do sleep 0.01; done
"""

SHELL_DAG = """
from orchestrator import DAG, Shell

with DAG("shell"):
    Shell({spawn!r} + "echo done", task_id="spawns_and_succeeds")
    Shell({spawn!r} + "echo ready > {fifo}; sleep 3604", task_id="spawns_and_hangs")
    Shell("sleep 3605 & echo done", task_id="leaves_a_child_on_stdout")
"""


class ShellDag:
    """A DAG file of `Shell` tasks, and jobs for them that run in worker processes."""

    def __init__(self, folder: Path) -> None:
        self.pids = folder / "pids"
        self.pids.touch()
        self.fifo = folder / "fifo"
        self.path = folder / "dag_shell.py"
        spawn = SPAWN.format(pids=self.pids)
        self.path.write_text(SHELL_DAG.format(spawn=spawn, fifo=self.fifo))
        result = load_dag_file(self.path)
        assert not result.errors, result.errors
        self.tasks = result.dags["shell"].tasks
        self.folder = folder

    def job(self, task_id: str, *, timeout: float | None = None) -> tuple[TaskJob, Task]:
        log_path = str(self.folder / "logs" / f"{task_id}.log")
        context = TaskContext(dag_id="shell", run_id="run1", task_id=task_id, log_path=log_path)
        job = TaskJob(
            dag_id="shell",
            task_id=task_id,
            fileloc=str(self.path),
            context=context,
            inputs={"args": [], "kwargs": {}},
            timeout=timeout,
            in_process=False,
            result_max_bytes=1000,
            log_max_bytes=LOG_MAX_BYTES,
        )
        return job, self.tasks[task_id]

    def children(self) -> list[int]:
        return [int(line) for line in self.pids.read_text().split()]


def result(outcome: TaskOutcome) -> object:
    assert outcome.status is Outcome.SUCCESS, outcome.error
    return json.loads(outcome.result_json or "null")


async def test_a_try_that_succeeds_leaves_no_process_behind(tmp_path: Path) -> None:
    dag = ShellDag(tmp_path)
    async with Executor.open(slots=1) as executor:
        assert result(await executor.execute(*dag.job("spawns_and_succeeds"))) == "done"
        children = dag.children()
        assert len(children) == 3
        # Gone by the time the outcome arrives, though the worker lives on for the next task.
        assert [pid for pid in children if is_running(pid)] == []
        assert executor.statistics.workers_alive == 1


@pytest.mark.parametrize("ending", ["cancel", "timeout"])
async def test_a_try_that_is_stopped_leaves_no_process_behind(tmp_path: Path, ending: str) -> None:
    dag = ShellDag(tmp_path)
    fifo = open_fifo(dag.fifo)
    outcomes: list[TaskOutcome] = []
    try:
        async with Executor.open(slots=1) as executor, anyio.create_task_group() as group:

            async def run() -> None:
                timeout = 2.0 if ending == "timeout" else None
                outcomes.append(
                    await executor.execute(*dag.job("spawns_and_hangs", timeout=timeout))
                )

            group.start_soon(run)
            with anyio.fail_after(30):
                assert await read_fifo_line(fifo) == "ready"
            pidfds = [os.pidfd_open(pid) for pid in dag.children()]
            if ending == "cancel":
                group.cancel_scope.cancel()
    finally:
        os.close(fifo)
    try:
        with anyio.fail_after(30):
            for pidfd in pidfds:
                await wait_until_exited(pidfd)
    finally:
        for pidfd in pidfds:
            os.close(pidfd)
    assert [pid for pid in dag.children() if is_running(pid)] == []
    if ending == "timeout":
        assert [outcome.error for outcome in outcomes] == [
            "timed out after 2 s (execution_timeout)"
        ]


async def test_a_background_child_holding_stdout_does_not_keep_the_task_running(
    tmp_path: Path,
) -> None:
    dag = ShellDag(tmp_path)
    async with Executor.open(slots=1) as executor:
        with anyio.fail_after(30):  # the child sleeps for an hour
            outcome = await executor.execute(*dag.job("leaves_a_child_on_stdout"))
    assert result(outcome) == "done"


async def test_a_task_that_closes_the_workers_file_descriptors_is_told_so(
    tmp_path: Path,
) -> None:
    dag_file = DagFile(
        tmp_path,
        """
@task
def close_everything():
    os.closerange(3, 1024)
    time.sleep(3600)
""",
    )
    async with Executor.open(slots=1) as executor:
        with anyio.fail_after(30):
            outcome = await executor.execute(
                dag_file.job("close_everything"), dag_file.task("close_everything")
            )
    assert outcome.status is Outcome.FAILED
    assert outcome.error is not None
    assert "out of memory" not in outcome.error
    assert "closed" in outcome.error and "file descriptors" in outcome.error, outcome.error
