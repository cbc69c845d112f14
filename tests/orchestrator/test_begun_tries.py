"""The `begun-tries` journal: the mark recovery counts a try by, now that quiet tries make no log.

The daemon-level contract (a task that kills the daemon each time fails after
`max_interrupted_tries`; one whose worker never got the job is not counted) is tested with a
real daemon in `tests/daemon/test_interrupted_tries.py`; here, the parts: the mark is made by
the try's own thread or worker before its code runs, it falls back to the log file, the
engine reads it at recovery and clears it, and it is kept small while the daemon runs.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path

import anyio
import pytest
from taskjobs import DagFile

from helpers import bag_of
from orchestrator import DAG, task
from orchestrator.config import Settings
from orchestrator.execution.begun_tries import BegunTries, mark_begun
from orchestrator.execution.executor import Executor
from orchestrator.execution.jobs import Outcome
from orchestrator.scheduling.engine import Engine
from orchestrator.state import RunState

SettingsFactory = Callable[..., Settings]

READS_THE_JOURNAL = """
@task
def look(journal):
    with open(journal) as marks:
        return marks.read()
"""


def test_a_mark_is_one_line_per_try_and_needs_no_log(tmp_path: Path) -> None:
    journal = str(tmp_path / "begun-tries")
    mark_begun(journal, "/logs/d/r/a.try-1.log")
    mark_begun(journal, "/logs/d/r/b.try-1.log")
    mark_begun("", "/logs/d/r/c.try-1.log")  # a job not from the dispatcher: no mark
    mark_begun(journal, "")  # a try without a log: nothing to count it by
    assert Path(journal).read_text() == '"/logs/d/r/a.try-1.log"\n"/logs/d/r/b.try-1.log"\n'
    assert BegunTries(tmp_path).read() == {"/logs/d/r/a.try-1.log", "/logs/d/r/b.try-1.log"}


def test_a_mark_holds_any_path_and_a_torn_line_is_skipped(tmp_path: Path) -> None:
    journal = str(tmp_path / "begun-tries")
    odd = "/logs/d/r/a task\nwith a newline.try-1.log"  # task ids are free text
    mark_begun(journal, odd)
    with open(journal, "a") as file:
        file.write('"/logs/d/r/cut short by a power')  # no end: the last write was torn
    assert BegunTries(tmp_path).read() == {odd}


def test_a_journal_that_cannot_be_written_marks_with_the_log_file(tmp_path: Path) -> None:
    (tmp_path / "begun-tries").mkdir()  # not a file: appending to it fails
    log = tmp_path / "logs" / "d" / "r" / "a.try-1.log"
    mark_begun(str(tmp_path / "begun-tries"), str(log))
    assert log.read_text() == ""  # the mark recovery checked before the journal
    (tmp_path / "a_file").write_text("")
    with pytest.raises(NotADirectoryError):  # neither can be made: the try fails, as before
        mark_begun(str(tmp_path / "begun-tries"), str(tmp_path / "a_file" / "a.try-1.log"))


def test_compaction_keeps_an_earlier_process_lines_and_the_running_tries(tmp_path: Path) -> None:
    (tmp_path / "begun-tries").write_text('"earlier"\n')  # from a process that did not recover
    journal = BegunTries(tmp_path, compact_every=3)
    running = ["a", "b"]
    for path in ("a", "b", "c"):
        mark_begun(journal.path, path)
        journal.started(lambda: running)
    assert journal.read() == {"earlier", "a", "b"}  # `c` ended: its line goes
    assert Path(journal.path).read_text().count("\n") == 3
    journal.clear()  # a recovery read and committed them
    assert journal.read() == frozenset()
    for path in ("d", "e", "f"):
        mark_begun(journal.path, path)
        journal.started(lambda: ["f"])
    assert Path(journal.path).read_text() == '"f"\n'


@pytest.mark.parametrize("in_process", [False, True], ids=["worker", "thread"])
async def test_the_try_marks_itself_before_its_code_runs(tmp_path: Path, in_process: bool) -> None:
    dag_file = DagFile(tmp_path, READS_THE_JOURNAL)
    journal = tmp_path / "begun-tries"
    job = dag_file.job("look", str(journal), in_process=in_process)
    job = dataclasses.replace(job, begun_journal=str(journal))
    async with Executor.open(slots=1) as executor:
        outcome = await executor.execute(job, dag_file.task("look"))
    assert outcome.status is Outcome.SUCCESS, outcome.error
    assert outcome.result_json is not None  # what the journal held as the task's code ran
    assert json.loads(outcome.result_json) == f"{json.dumps(str(dag_file.log_path('look')))}\n"
    assert not dag_file.log_path("look").exists()  # quiet: marked, but no log made


async def test_the_engine_marks_each_try_and_a_recovery_clears_the_marks(
    make_settings: SettingsFactory,
) -> None:
    @task
    def quiet() -> int:
        return 1

    with DAG("marked") as dag:
        quiet()
    settings = make_settings()
    journal = settings.state_dir / "begun-tries"
    async with Engine.open(settings, dagbag=bag_of(dag), recover=False) as engine:
        with anyio.fail_after(20):
            record = await engine.wait(await engine.trigger("marked"))
    assert record.state is RunState.SUCCESS
    log = settings.logs_dir / "marked" / record.run_id / "quiet.try-1.log"
    assert BegunTries(settings.state_dir).read() == {str(log)}
    assert not log.exists()
    async with Engine.open(settings, dagbag=bag_of(dag)):  # recovers: reads, then clears
        assert journal.read_text() == ""
