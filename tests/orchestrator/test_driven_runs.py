"""A driven run's done event: made when first asked for, set once its end has committed."""

from __future__ import annotations

import anyio
import anyio.lowlevel

from orchestrator import DAG, task
from orchestrator.scheduling.driven_runs import DrivenRuns
from orchestrator.scheduling.scheduler import Scheduler


def _dag() -> DAG:
    with DAG("driven") as dag:
        task(lambda: None, task_id="work")()
    return dag


async def test_a_runs_event_is_made_when_asked_for_and_set_when_it_ends() -> None:
    driven = DrivenRuns(Scheduler(slots=1, pools={}, log_dir="logs"))
    dag = _dag()
    driven.track("asked", dag)
    driven.track("never-asked", dag)
    assert driven.dag_of("asked") is dag
    done = driven.done_event("asked")
    assert isinstance(done, anyio.Event) and not done.is_set()
    assert driven.done_event("asked") is done  # the same event for every waiter
    driven.finished("asked")
    driven.finished("never-asked")  # nobody waited: nothing to set, and forgotten all the same
    assert done.is_set()
    for run_id in ("asked", "never-asked", "unknown"):
        assert driven.done_event(run_id) is None
        assert driven.dag_of(run_id) is None


async def test_a_waiter_wakes_when_the_run_ends() -> None:
    driven = DrivenRuns(Scheduler(slots=1, pools={}, log_dir="logs"))
    driven.track("run", _dag())
    done = driven.done_event("run")
    assert done is not None
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(done.wait)
            await anyio.lowlevel.checkpoint()
            driven.finished("run")
