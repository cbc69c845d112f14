"""Where a try logs: `logs/DAG/RUN/TASK.try-N.log`, and a try begun before keeps its own log.

Tries of a run log side by side in the run's folder (a folder per task cost a mkdir per task,
which also made the next commit's fsync heavier). A try that an older version began in its
own task folder (`DAG/RUN/TASK/try-N.log`) and that resumes or is recovered after the upgrade
goes on in that log, the one its try record names.
"""

from __future__ import annotations

from pathlib import Path

from schedulerkit import DrivenScheduler

from orchestrator import DAG, task
from orchestrator.scheduling.active_runs import ActiveRun, DagPlan, TaskInstance
from orchestrator.scheduling.scheduler import Scheduler
from orchestrator.state import RunState, TaskState
from orchestrator.store.records import RunRecord


@task
def noop() -> None:
    return None


def started_run(log_dir: Path) -> tuple[Scheduler, ActiveRun]:
    with DAG("layout") as dag:
        noop.override(task_id="solo")()
    driven = DrivenScheduler(slots=8, now=1.0)
    driven.scheduler.log_dir = str(log_dir)
    record = RunRecord(run_id="r1", dag_id="layout", state=RunState.QUEUED, conf={}, queued_at=0)
    run = ActiveRun(record, dag, DagPlan.of(dag))
    driven.scheduler.add_run(run)
    driven.step()
    return driven.scheduler, run


def test_a_new_try_logs_beside_the_others_of_its_run(tmp_path: Path) -> None:
    scheduler, run = started_run(tmp_path)
    solo = run.instances["solo"][-1]
    assert solo.try_number == 1
    assert solo.log_path == f"{tmp_path}/layout/r1/solo.try-1.log"
    assert scheduler.begun_log_path(solo) == solo.log_path  # no older log to go on with


def test_a_try_begun_in_a_task_folder_goes_on_in_that_log(tmp_path: Path) -> None:
    scheduler, run = started_run(tmp_path)
    solo = run.instances["solo"][-1]
    older = tmp_path / "layout" / "r1" / "solo" / "try-1.log"
    older.parent.mkdir(parents=True)
    older.write_text("before the upgrade\n")
    assert scheduler.begun_log_path(solo) == str(older)
    assert scheduler.log_path(solo) == f"{tmp_path}/layout/r1/solo.try-1.log"  # a new try's


def test_an_expanded_element_logs_under_its_task_and_index(tmp_path: Path) -> None:
    scheduler, run = started_run(tmp_path)
    element = TaskInstance(
        run=run, task=run.dag.tasks["solo"], map_index=2, state=TaskState.RUNNING, priority=1
    )
    element.try_number = 3
    assert scheduler.log_path(element) == f"{tmp_path}/layout/r1/solo.2.try-3.log"
    older = tmp_path / "layout" / "r1" / "solo.2" / "try-3.log"
    older.parent.mkdir(parents=True)
    older.write_text("before the upgrade\n")
    assert scheduler.begun_log_path(element) == str(older)
