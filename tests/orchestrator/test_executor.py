"""The executor: worker processes, in-loop and in-thread tasks, timeouts, crashes and cancels."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import pytest
from taskjobs import (
    HANGS_AFTER_WRITING_PID,
    DagFile,
    is_running,
    open_fifo,
    read_fifo_line,
    wait_until_exited,
)

from orchestrator.errors import ConfigError
from orchestrator.execution.executor import Executor
from orchestrator.execution.jobs import Outcome, TaskOutcome

MODES = ["worker", "thread", "loop"]

# Each task exists as sync (run in a worker or a thread) and async (run in the loop).
FAILING_TASKS = """
@task
def explode():
    raise ValueError("bad row 7")

@task
async def explode_async():
    raise ValueError("bad row 7")

@task
def skip():
    raise Skip("no new data")

@task
async def skip_async():
    raise Skip("no new data")

@task
def unstorable(size):
    return {"data": "x" * size} if size else object()

@task
async def unstorable_async(size):
    return {"data": "x" * size} if size else object()
"""


async def run_in_mode(dag_file: DagFile, name: str, mode: str, *args: Any) -> TaskOutcome:
    """Run task `name` (or `name_async`, in loop mode) the way `mode` says."""
    task_id = f"{name}_async" if mode == "loop" else name
    job = dag_file.job(task_id, *args, in_process=mode == "thread", result_max_bytes=100)
    async with Executor.open(slots=1) as executor:
        outcome = await executor.execute(job, dag_file.task(task_id))
        assert executor.statistics.workers_started == (1 if mode == "worker" else 0)
    return outcome


def result(outcome: TaskOutcome) -> Any:
    assert outcome.status is Outcome.SUCCESS, outcome.error
    assert outcome.result_json is not None
    return json.loads(outcome.result_json)


# -- the three modes ------------------------------------------------------------------------------


async def test_a_sync_task_runs_in_a_worker_process(tmp_path: Path) -> None:
    dag_file = DagFile(
        tmp_path,
        """
@task
def add(a, b, context):
    print("adding")
    return {"sum": a + b, "pid": os.getpid(), "try": context.try_number}
""",
    )
    async with Executor.open(slots=1) as executor:
        outcome = await executor.execute(dag_file.job("add", 1, b=2), dag_file.task("add"))
        statistics = executor.statistics
    assert result(outcome)["sum"] == 3
    assert result(outcome)["try"] == 1
    assert result(outcome)["pid"] != os.getpid()
    assert dag_file.log("add") == "adding\n"
    assert (statistics.workers_started, statistics.tasks_run) == (1, 1)
    assert executor.statistics.workers_alive == 0  # closing the executor stopped the worker


async def test_an_async_task_runs_in_the_loop_with_its_output_in_its_log(tmp_path: Path) -> None:
    dag_file = DagFile(
        tmp_path,
        """
from orchestrator.authoring.context import get_current_context

@task
async def fetch(url):
    print("fetching", url)
    logging.getLogger("fetch").warning("slow server")
    return {"url": url, "run": get_current_context().run_id, "pid": os.getpid()}
""",
    )
    async with Executor.open(slots=1) as executor:
        outcome = await executor.execute(dag_file.job("fetch", "http://x"), dag_file.task("fetch"))
        assert executor.statistics.workers_started == 0
    assert result(outcome) == {"url": "http://x", "run": "run1", "pid": os.getpid()}
    log = dag_file.log("fetch")
    assert log.startswith("fetching http://x\n")
    assert "WARNING fetch: slow server" in log


async def test_an_in_process_task_runs_in_a_thread_with_its_output_in_its_log(
    tmp_path: Path,
) -> None:
    dag_file = DagFile(
        tmp_path,
        """
@task
def crunch(n, context):
    print("crunching", n)
    sys.stderr.write("warning: big\\n")
    return {"n": n, "thread": threading.get_ident(), "pid": os.getpid(), "run": context.run_id}
""",
    )
    async with Executor.open(slots=1) as executor:
        job = dag_file.job("crunch", 5, in_process=True)
        outcome = await executor.execute(job, dag_file.task("crunch"))
        assert executor.statistics.workers_started == 0
    value = result(outcome)
    assert (value["n"], value["pid"], value["run"]) == (5, os.getpid(), "run1")
    assert value["thread"] != threading.get_ident()
    assert dag_file.log("crunch") == "crunching 5\nwarning: big\n"


# -- how tries fail, the same in every mode -------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
async def test_a_raising_task_fails_with_one_line_and_its_traceback_in_the_log(
    tmp_path: Path, mode: str
) -> None:
    dag_file = DagFile(tmp_path, FAILING_TASKS)
    outcome = await run_in_mode(dag_file, "explode", mode)
    assert outcome == TaskOutcome(status=Outcome.FAILED, error="ValueError: bad row 7")
    log = dag_file.log("explode_async" if mode == "loop" else "explode")
    assert "Traceback (most recent call last)" in log
    assert 'raise ValueError("bad row 7")' in log


@pytest.mark.parametrize("mode", MODES)
async def test_a_task_that_raises_skip_is_skipped(tmp_path: Path, mode: str) -> None:
    dag_file = DagFile(tmp_path, FAILING_TASKS)
    outcome = await run_in_mode(dag_file, "skip", mode)
    assert outcome == TaskOutcome(status=Outcome.SKIPPED, error="no new data")


@pytest.mark.parametrize("mode", MODES)
async def test_a_result_that_is_not_json_fails_clearly(tmp_path: Path, mode: str) -> None:
    dag_file = DagFile(tmp_path, FAILING_TASKS)
    outcome = await run_in_mode(dag_file, "unstorable", mode, 0)
    assert outcome.status is Outcome.FAILED
    assert outcome.error is not None
    assert "is not JSON-serialisable (TypeError: Object of type object" in outcome.error
    assert "write large data to a file and return its path" in outcome.error


@pytest.mark.parametrize("mode", MODES)
async def test_a_result_over_the_limit_fails_clearly(tmp_path: Path, mode: str) -> None:
    dag_file = DagFile(tmp_path, FAILING_TASKS)
    outcome = await run_in_mode(dag_file, "unstorable", mode, 500)
    assert outcome.status is Outcome.FAILED
    assert outcome.error is not None
    assert "is 511 bytes of JSON, over the limit of 100 bytes (result_max_bytes)" in outcome.error


async def test_inputs_that_cannot_be_sent_to_a_worker_fail_the_try(tmp_path: Path) -> None:
    dag_file = DagFile(tmp_path, "@task\ndef take(value):\n    return 1\n")
    async with Executor.open(slots=1) as executor:
        outcome = await executor.execute(dag_file.job("take", {1, 2}), dag_file.task("take"))
    assert outcome.status is Outcome.FAILED
    assert outcome.error is not None
    assert outcome.error.startswith("the inputs of task 'take' cannot be sent to a worker")
    assert outcome.error in dag_file.log("take")


# -- workers that exit, crash or are recycled ------------------------------------------------------

CRASHING_TASKS = """
@task
def pid():
    return os.getpid()

@task
def leave(code):
    sys.exit(code)

@task
def vanish():
    os._exit(7)

@task
def segfault():
    import ctypes
    ctypes.string_at(0)
"""


async def test_sys_exit_fails_the_try_but_the_worker_lives_on(tmp_path: Path) -> None:
    dag_file = DagFile(tmp_path, CRASHING_TASKS)
    async with Executor.open(slots=1) as executor:
        before = result(await executor.execute(dag_file.job("pid"), dag_file.task("pid")))
        outcome = await executor.execute(dag_file.job("leave", 3), dag_file.task("leave"))
        after = result(await executor.execute(dag_file.job("pid"), dag_file.task("pid")))
        assert executor.statistics.workers_started == 1
    assert outcome == TaskOutcome(status=Outcome.FAILED, error="task called sys.exit(3)")
    assert before == after
    assert "SystemExit: 3" in dag_file.log("leave")


async def test_a_worker_that_exits_mid_task_is_reported_and_replaced(tmp_path: Path) -> None:
    dag_file = DagFile(tmp_path, CRASHING_TASKS)
    async with Executor.open(slots=1) as executor:
        before = result(await executor.execute(dag_file.job("pid"), dag_file.task("pid")))
        outcome = await executor.execute(dag_file.job("vanish"), dag_file.task("vanish"))
        after = result(await executor.execute(dag_file.job("pid"), dag_file.task("pid")))
        statistics = executor.statistics
    assert outcome == TaskOutcome(status=Outcome.FAILED, error="worker process died: exit code 7")
    assert "worker process died: exit code 7" in dag_file.log("vanish")
    assert before != after
    assert (statistics.workers_started, statistics.workers_crashed) == (2, 1)
    assert statistics.workers_killed == 0


async def test_a_segfault_is_reported_by_its_signal(tmp_path: Path) -> None:
    dag_file = DagFile(tmp_path, CRASHING_TASKS)
    async with Executor.open(slots=1) as executor:
        outcome = await executor.execute(dag_file.job("segfault"), dag_file.task("segfault"))
        assert result(await executor.execute(dag_file.job("pid"), dag_file.task("pid")))
    assert outcome == TaskOutcome(
        status=Outcome.FAILED, error="worker process died: killed by signal SIGSEGV"
    )


async def test_worker_max_tasks_recycles_workers(tmp_path: Path) -> None:
    dag_file = DagFile(tmp_path, CRASHING_TASKS)
    async with Executor.open(slots=1, worker_max_tasks=2) as executor:
        pids = [
            result(await executor.execute(dag_file.job("pid"), dag_file.task("pid")))
            for _ in range(5)
        ]
        statistics = executor.statistics
    assert pids[0] == pids[1] != pids[2] == pids[3] != pids[4]
    assert statistics.workers_started == 3
    assert statistics.workers_killed == statistics.workers_crashed == 0


@pytest.mark.parametrize("max_tasks", [None, 1])
async def test_never_more_worker_processes_than_slots(
    tmp_path: Path, max_tasks: int | None
) -> None:
    dag_file = DagFile(tmp_path, CRASHING_TASKS)
    pids: list[int] = []
    alive: list[int] = []

    async with Executor.open(slots=2, worker_max_tasks=max_tasks) as executor:

        async def run_one() -> None:
            pids.append(result(await executor.execute(dag_file.job("pid"), dag_file.task("pid"))))
            alive.append(executor.statistics.workers_alive)

        async with anyio.create_task_group() as task_group:
            for _ in range(6):
                task_group.start_soon(run_one)
        started = executor.statistics.workers_started
    assert len(pids) == 6
    assert max(alive) <= 2
    if max_tasks is None:
        assert started == len(set(pids)) <= 2
    else:
        assert started == len(set(pids)) == 6  # each worker ran one task, one at a time per slot


async def test_prestarted_workers_serve_the_first_tasks(tmp_path: Path) -> None:
    dag_file = DagFile(tmp_path, CRASHING_TASKS)
    async with Executor.open(slots=3, prestart=1) as executor:
        result(await executor.execute(dag_file.job("pid"), dag_file.task("pid")))
        assert executor.statistics.workers_started == 1


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"slots": 0}, "1 or more slots"),
        ({"slots": 1, "worker_max_tasks": 0}, "worker_max_tasks must be 1 or more"),
        ({"slots": 2, "prestart": 3}, "prestart must be between 0 and slots"),
        ({"slots": 2, "prestart": -1}, "prestart must be between 0 and slots"),
    ],
)
async def test_bad_executor_options_are_refused(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        async with Executor.open(**options):
            pass


# -- a misbehaving worker -------------------------------------------------------------------------

PROTOCOL_BREAKERS = """
import gc

def _protocol():
    worker = sys.modules["__main__"]
    return next(o for o in gc.get_objects() if isinstance(o, worker.Channel)).outgoing

@task
def garbage():
    _protocol().write(b"this is not json\\n")
    _protocol().flush()
    threading.Event().wait()

@task
def not_an_outcome():
    _protocol().write(b'{"status": "splendid"}\\n')
    _protocol().flush()
    threading.Event().wait()

@task
def endless():
    _protocol().write(b"x" * 200_000)
    _protocol().flush()
    threading.Event().wait()
"""


@pytest.mark.parametrize(
    ("task_id", "message"),
    [
        ("garbage", "the worker process sent a reply that is not JSON"),
        ("endless", "the worker process sent a reply longer than 65736 bytes"),
        ("not_an_outcome", "the worker process sent a reply that is not an outcome"),
    ],
)
async def test_a_reply_that_breaks_the_protocol_kills_the_worker(
    tmp_path: Path, task_id: str, message: str
) -> None:
    dag_file = DagFile(tmp_path, PROTOCOL_BREAKERS)
    async with Executor.open(slots=1) as executor:
        job = dag_file.job(task_id, result_max_bytes=100)
        outcome = await executor.execute(job, dag_file.task(task_id))
        assert executor.statistics.workers_killed == 1
        assert executor.statistics.workers_alive == 0
    assert outcome.status is Outcome.FAILED
    assert outcome.error is not None and outcome.error.startswith(message)


# -- timeouts and cancellation --------------------------------------------------------------------


@pytest.mark.slow
async def test_a_timeout_kills_the_worker_and_the_processes_the_task_started(
    tmp_path: Path,
) -> None:
    dag_file = DagFile(
        tmp_path,
        """
@task
def warm():
    return os.getpid()

@task
def hang(fifo):
    child = subprocess.Popen(["sleep", "1000"])
    with open(fifo, "w") as pipe:
        pipe.write(f"{child.pid}\\n")
    threading.Event().wait()
""",
    )
    fifo = open_fifo(tmp_path / "fifo")
    try:
        async with Executor.open(slots=1) as executor:
            # A warm worker has imported the file, so the 1 s go to the task itself.
            result(await executor.execute(dag_file.job("warm"), dag_file.task("warm")))
            async with anyio.create_task_group() as task_group:
                outcomes: list[TaskOutcome] = []

                async def run_hang() -> None:
                    job = dag_file.job("hang", str(tmp_path / "fifo"), timeout=1)
                    outcomes.append(await executor.execute(job, dag_file.task("hang")))

                task_group.start_soon(run_hang)
                with anyio.fail_after(30):
                    child = int(await read_fifo_line(fifo))
                pidfd = os.pidfd_open(child)
            statistics = executor.statistics
    finally:
        os.close(fifo)
    try:
        with anyio.fail_after(30):
            await wait_until_exited(pidfd)
    finally:
        os.close(pidfd)
    expected = "timed out after 1 s (execution_timeout)"
    assert outcomes == [TaskOutcome(status=Outcome.FAILED, error=expected)]
    assert dag_file.log("hang").endswith(expected + "\n")
    assert not is_running(child)
    assert (statistics.workers_killed, statistics.workers_alive) == (1, 0)


async def test_cancelling_execute_kills_the_worker(tmp_path: Path) -> None:
    dag_file = DagFile(
        tmp_path,
        HANGS_AFTER_WRITING_PID,
    )
    fifo = open_fifo(tmp_path / "fifo")
    try:
        async with Executor.open(slots=1) as executor:
            async with anyio.create_task_group() as task_group:
                job = dag_file.job("hang", str(tmp_path / "fifo"))
                task_group.start_soon(executor.execute, job, dag_file.task("hang"))
                with anyio.fail_after(30):
                    worker = int(await read_fifo_line(fifo))
                pidfd = os.pidfd_open(worker)
                task_group.cancel_scope.cancel()
            statistics = executor.statistics
    finally:
        os.close(fifo)
    try:
        with anyio.fail_after(30):
            await wait_until_exited(pidfd)
    finally:
        os.close(pidfd)
    assert not is_running(worker)
    assert (statistics.workers_killed, statistics.workers_alive, statistics.tasks_run) == (1, 0, 0)


WAITS_FOREVER = """
import anyio

cleaned_up = []

@task
async def wait_forever():
    try:
        await anyio.sleep_forever()
    finally:
        cleaned_up.append(True)
"""


async def test_an_async_task_past_its_timeout_is_cancelled(tmp_path: Path) -> None:
    dag_file = DagFile(
        tmp_path,
        WAITS_FOREVER,
    )
    task = dag_file.task("wait_forever")
    async with Executor.open(slots=1) as executor:
        outcome = await executor.execute(dag_file.job("wait_forever", timeout=0.01), task)
    expected = "timed out after 0.01 s (execution_timeout)"
    assert outcome == TaskOutcome(status=Outcome.FAILED, error=expected)
    assert dag_file.log("wait_forever").endswith(expected + "\n")
    assert task.function.__globals__["cleaned_up"] == [True]  # type: ignore[attr-defined]


async def test_cancelling_an_async_task_cancels_its_code(tmp_path: Path) -> None:
    dag_file = DagFile(
        tmp_path,
        WAITS_FOREVER,
    )
    task = dag_file.task("wait_forever")
    async with Executor.open(slots=1) as executor:
        with anyio.move_on_after(0.01):
            await executor.execute(dag_file.job("wait_forever"), task)
        assert executor.statistics.tasks_run == 0
    assert task.function.__globals__["cleaned_up"] == [True]  # type: ignore[attr-defined]


async def test_a_thread_past_its_timeout_is_abandoned_and_the_try_fails(tmp_path: Path) -> None:
    dag_file = DagFile(tmp_path, BLOCKING_TASK)
    task = dag_file.task("block")
    events: dict[str, threading.Event] = task.function.__globals__  # type: ignore[attr-defined]
    async with Executor.open(slots=1) as executor:
        job = dag_file.job("block", timeout=0.01, in_process=True)
        outcome = await executor.execute(job, task)
    assert outcome == TaskOutcome(
        status=Outcome.FAILED, error="timed out after 0.01 s (execution_timeout)"
    )
    assert not events["finished"].is_set()  # the thread is still running
    events["release"].set()
    assert await anyio.to_thread.run_sync(events["finished"].wait, 30)
    assert "finished after all" in dag_file.log("block")  # its log stayed open for it


# -- sync tries started without a task: in a thread or on an idle worker -------------------------


class Reports:
    """What `start_now` reports, and an event per report to wait on."""

    def __init__(self) -> None:
        self.outcomes: list[tuple[TaskOutcome, bool]] = []
        self.arrived = anyio.Event()

    def __call__(self, outcome: TaskOutcome, log_capped: bool) -> None:
        self.outcomes.append((outcome, log_capped))
        self.arrived.set()


async def test_a_thread_try_started_without_a_task_reports_its_outcome(tmp_path: Path) -> None:
    dag_file = DagFile(tmp_path, "@task\ndef double(x):\n    print('doubling')\n    return 2 * x\n")
    reports = Reports()
    async with Executor.open(slots=1) as executor:
        job = dag_file.job("double", 21, in_process=True, timeout=60)
        assert executor.start_now(job, dag_file.task("double"), reports) is not None
        await reports.arrived.wait()
        assert executor.statistics.tasks_run == 1
    [(outcome, log_capped)] = reports.outcomes
    assert result(outcome) == 42 and log_capped  # its log was capped while it was written
    assert "doubling" in dag_file.log("double")


async def test_a_try_starts_without_a_task_only_on_a_free_thread_or_idle_worker(
    tmp_path: Path,
) -> None:
    dag_file = DagFile(
        tmp_path, "@task\ndef sync_one():\n    pass\n\n@task\nasync def async_one():\n    pass\n"
    )
    reports = Reports()
    async with Executor.open(slots=1) as executor:
        worker_job = dag_file.job("sync_one")  # no worker is idle: none was started yet
        assert executor.start_now(worker_job, dag_file.task("sync_one"), reports) is None
        loop_job = dag_file.job("async_one", in_process=True)
        assert executor.start_now(loop_job, dag_file.task("async_one"), reports) is None
        thread_job = dag_file.job("sync_one", in_process=True)
        assert executor.start_now(thread_job, dag_file.task("sync_one"), reports)
        # The one slot's thread is taken: the next try has to wait, in a task (`execute`).
        assert executor.start_now(thread_job, dag_file.task("sync_one"), reports) is None
        await reports.arrived.wait()
    assert [outcome.status for outcome, _ in reports.outcomes] == [Outcome.SUCCESS]


BLOCKING_TASK = """
release, finished = threading.Event(), threading.Event()

@task
def block():
    release.wait()
    print("finished after all", flush=True)  # in the log before `finished` is set
    finished.set()
"""


async def test_a_thread_try_without_a_task_times_out_and_its_thread_is_abandoned(
    tmp_path: Path,
) -> None:
    dag_file = DagFile(tmp_path, BLOCKING_TASK)
    task = dag_file.task("block")
    events: dict[str, threading.Event] = task.function.__globals__  # type: ignore[attr-defined]
    reports = Reports()
    async with Executor.open(slots=1) as executor:
        job = dag_file.job("block", timeout=0.01, in_process=True)
        assert executor.start_now(job, task, reports) is not None
        await reports.arrived.wait()
        events["release"].set()
        assert await anyio.to_thread.run_sync(events["finished"].wait, 30)
    timed_out = TaskOutcome(
        status=Outcome.FAILED, error="timed out after 0.01 s (execution_timeout)"
    )
    assert reports.outcomes == [(timed_out, False)]  # the notice was appended past the cap
    assert "finished after all" in dag_file.log("block")


async def test_an_abandoned_thread_try_reports_nothing_and_frees_its_slot(tmp_path: Path) -> None:
    dag_file = DagFile(tmp_path, BLOCKING_TASK + "\n@task\ndef quick():\n    return 1\n")
    task = dag_file.task("block")
    events: dict[str, threading.Event] = task.function.__globals__  # type: ignore[attr-defined]
    abandoned, reports = Reports(), Reports()
    async with Executor.open(slots=1) as executor:
        job = dag_file.job("block", timeout=60, in_process=True)
        stop = executor.start_now(job, task, abandoned)
        assert stop is not None
        stopped: list[str] = []
        stop(lambda: stopped.append("stopped"))
        assert stopped == ["stopped"]  # at once: the thread is abandoned
        quick = dag_file.job("quick", in_process=True)
        assert executor.start_now(quick, dag_file.task("quick"), reports) is not None
        await reports.arrived.wait()
        events["release"].set()
        assert await anyio.to_thread.run_sync(events["finished"].wait, 30)
        assert executor.statistics.tasks_run == 1
    assert abandoned.outcomes == []
    assert [result(outcome) for outcome, _ in reports.outcomes] == [1]


async def worker_started(executor: Executor, dag_file: DagFile) -> int:
    """Run `pid` once, so that a worker is idle; its pid."""
    outcome = await executor.execute(dag_file.job("pid", try_number=99), dag_file.task("pid"))
    pid: int = result(outcome)
    return pid


async def test_a_worker_try_started_without_a_task_reports_its_outcome(tmp_path: Path) -> None:
    dag_file = DagFile(tmp_path, CRASHING_TASKS)
    reports = Reports()
    async with Executor.open(slots=1) as executor:
        pid = await worker_started(executor, dag_file)
        assert executor.start_now(dag_file.job("pid"), dag_file.task("pid"), reports)
        await reports.arrived.wait()
        statistics = executor.statistics
    [(outcome, log_capped)] = reports.outcomes
    assert result(outcome) == pid and log_capped  # on the idle worker; its pipe capped the log
    assert (statistics.tasks_run, statistics.workers_started) == (2, 1)


async def test_a_worker_that_dies_in_a_try_without_a_task_is_reported_and_replaced(
    tmp_path: Path,
) -> None:
    dag_file = DagFile(tmp_path, CRASHING_TASKS)
    reports = Reports()
    async with Executor.open(slots=1) as executor:
        before = await worker_started(executor, dag_file)
        assert executor.start_now(dag_file.job("vanish"), dag_file.task("vanish"), reports)
        await reports.arrived.wait()
        after = await worker_started(executor, dag_file)
        statistics = executor.statistics
    died = TaskOutcome(status=Outcome.FAILED, error="worker process died: exit code 7")
    assert reports.outcomes == [(died, False)]
    assert "worker process died: exit code 7" in dag_file.log("vanish")
    assert before != after
    assert (statistics.workers_started, statistics.workers_crashed) == (2, 1)


async def test_a_worker_try_without_a_task_times_out_or_stops_and_its_worker_is_killed(
    tmp_path: Path,
) -> None:
    dag_file = DagFile(tmp_path, CRASHING_TASKS + HANGS_AFTER_WRITING_PID)
    timed_out, cancelled = Reports(), Reports()
    stopped = anyio.Event()
    async with Executor.open(slots=1) as executor:
        await worker_started(executor, dag_file)
        fifos = [open_fifo(tmp_path / f"pids-{try_number}") for try_number in (1, 2)]
        hang = dag_file.task("hang")
        job = dag_file.job("hang", str(tmp_path / "pids-1"), timeout=0.2)
        assert executor.start_now(job, hang, timed_out)
        await timed_out.arrived.wait()
        await worker_started(executor, dag_file)
        job = dag_file.job("hang", str(tmp_path / "pids-2"), try_number=2, timeout=3600)
        stop = executor.start_now(job, hang, cancelled)
        assert stop is not None
        hanging = int(await read_fifo_line(fifos[1]))
        stop(stopped.set)
        await stopped.wait()
        statistics = executor.statistics
    notice = TaskOutcome(status=Outcome.FAILED, error="timed out after 0.2 s (execution_timeout)")
    assert timed_out.outcomes == [(notice, False)]
    assert cancelled.outcomes == []
    assert statistics.workers_killed == 2
    assert not is_running(hanging)
    for fifo in fifos:
        os.close(fifo)


async def test_closing_the_executor_kills_the_worker_of_a_try_without_a_task(
    tmp_path: Path,
) -> None:
    dag_file = DagFile(tmp_path, CRASHING_TASKS + HANGS_AFTER_WRITING_PID)
    fifo = open_fifo(tmp_path / "pids")
    reports = Reports()
    async with Executor.open(slots=1) as executor:
        await worker_started(executor, dag_file)
        job = dag_file.job("hang", str(tmp_path / "pids"))
        assert executor.start_now(job, dag_file.task("hang"), reports)
        hanging = int(await read_fifo_line(fifo))
    assert not is_running(hanging)
    assert reports.outcomes == []
    os.close(fifo)
