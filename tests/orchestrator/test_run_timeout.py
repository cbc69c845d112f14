"""`DAG(run_timeout=...)`: a run still running that long after it started fails, its running
tries killed and its other unfinished tasks cancelled, on the engine's clock, across a restart."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import anyio
import pytest

from helpers import bag_of
from orchestrator import DAG, task
from orchestrator.clock import FakeClock
from orchestrator.config import Settings
from orchestrator.errors import DagError
from orchestrator.scheduling.engine import Engine
from orchestrator.state import RunState, TaskState
from orchestrator.store.records import TaskInstanceRecord

SettingsFactory = Callable[..., Settings]
REASON = "the run timed out (run_timeout): still running 600 s after it started at"


def forever_dag() -> tuple[DAG, anyio.Event]:
    started = anyio.Event()

    @task
    async def forever() -> None:
        started.set()
        await anyio.Event().wait()

    @task
    def after(value: None) -> str:
        return "never"

    with DAG("slow", run_timeout=timedelta(minutes=10)) as dag:
        after(forever())
    return dag, started


async def instances_of(engine: Engine, run_id: str) -> dict[str, TaskInstanceRecord]:
    return {ti.task_id: ti for ti in await engine.store.list_task_instances(run_id)}


async def until_asleep(clock: FakeClock) -> None:
    """The engine has gone idle, sleeping on its next timer (the run's deadline)."""
    while clock.sleepers == 0:
        await anyio.lowlevel.checkpoint()


async def test_a_run_past_its_timeout_fails_and_its_running_try_is_killed(
    make_settings: SettingsFactory,
) -> None:
    dag, started = forever_dag()
    clock = FakeClock()
    async with Engine.open(make_settings(), dagbag=bag_of(dag), clock=clock) as engine:
        with anyio.fail_after(20):
            run_id = await engine.trigger("slow")
            await started.wait()
            await until_asleep(clock)
            clock.advance(599)
            running = await engine.store.get_run(run_id)
            assert running is not None and running.state is RunState.RUNNING
            clock.advance(1)
            record = await engine.wait(run_id)
        instances = await instances_of(engine, run_id)
        tries = await engine.store.list_tries(run_id, "forever")
    assert record.state is RunState.FAILED
    assert instances["forever"].state is TaskState.CANCELLED
    assert instances["after"].state is TaskState.CANCELLED
    assert (instances["forever"].error or "").startswith(REASON)
    assert (instances["after"].error or "").startswith(REASON)
    assert [t.state for t in tries] == [TaskState.CANCELLED]


async def test_a_run_timeout_counts_from_the_stored_start_after_a_restart(
    make_settings: SettingsFactory,
) -> None:
    dag, started = forever_dag()
    settings = make_settings()
    clock = FakeClock()
    async with Engine.open(settings, dagbag=bag_of(dag), clock=clock) as engine:
        with anyio.fail_after(20):
            run_id = await engine.trigger("slow")
            await started.wait()
    clock.advance(590)  # the daemon was down for most of the run's ten minutes
    dag, started = forever_dag()
    async with Engine.open(settings, dagbag=bag_of(dag), clock=clock) as engine:
        with anyio.fail_after(20):
            await started.wait()
            await until_asleep(clock)
            clock.advance(10)
            record = await engine.wait(run_id)
        instances = await instances_of(engine, run_id)
    assert record.state is RunState.FAILED
    assert instances["forever"].state is TaskState.CANCELLED
    assert (instances["forever"].error or "").startswith(REASON)


async def test_a_run_without_a_timeout_sets_no_deadline_and_a_bad_one_is_refused(
    make_settings: SettingsFactory,
) -> None:
    with pytest.raises(DagError, match="run_timeout must be a finite number"):
        DAG("bad", run_timeout=0)
    with pytest.raises(DagError, match="run_timeout: a duration must be"):
        DAG("bad", run_timeout="1h")  # type: ignore[arg-type]
    assert DAG("plain").run_timeout is None
    assert DAG("minutes", run_timeout=timedelta(minutes=2)).run_timeout == 120.0
