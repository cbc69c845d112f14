"""A damaged row met at recovery fails only what depends on it; the engine starts and the rest
of the work goes on.

Two DAGs each leave a run waiting on a deferred sensor; one value of the first run is made
unreadable in the SQLite file while no engine runs; a new engine opens the state directory.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from contextlib import closing

import anyio
import pytest
import triggerkit
from triggerkit import GateSensor, open_gate, until_waiting

from helpers import bag_of
from orchestrator import DAG, task
from orchestrator.config import Settings
from orchestrator.scheduling.engine import Engine
from orchestrator.state import RunState, TaskState

SettingsFactory = Callable[..., Settings]


def landing(dag_id: str) -> DAG:
    """extract >> wait (on the gate named after the DAG) >> load."""
    with DAG(dag_id) as dag:

        @task
        def extract() -> int:
            return 3

        @task
        def load() -> str:
            return "loaded"

        extract() >> GateSensor(task_id="wait", gate=dag_id) >> load()
    return dag


#: What is damaged in the first DAG's run, and what its task instances then say.
CASES = {
    "conf": ("UPDATE runs SET conf = '{broken' WHERE dag_id = 'a'", "conf is not valid JSON"),
    "result": (
        "UPDATE task_results SET value = 'nope' WHERE task_id = 'extract' AND run_id IN "
        "(SELECT run_id FROM runs WHERE dag_id = 'a')",
        "the result of task extract",
    ),
}


async def _leave_waiting(settings: Settings) -> dict[str, str]:
    """One run of each DAG, stopped while its sensor waits; returns dag_id -> run_id."""
    async with Engine.open(settings, dagbag=bag_of(landing("a"), landing("b"))) as engine:
        runs = {dag_id: await engine.trigger(dag_id) for dag_id in ("a", "b")}
        await until_waiting("a", "b")
    triggerkit.waiting.clear()
    return runs


def _damage(settings: Settings, sql: str) -> None:
    with closing(sqlite3.connect(settings.state_dir / "orchestrator.db")) as connection:
        assert connection.execute(sql).rowcount == 1
        connection.commit()


async def _states(engine: Engine, run_id: str) -> dict[str, tuple[TaskState, str | None]]:
    rows = await engine.store.list_task_instances(run_id)
    return {ti.task_id: (ti.state, ti.error) for ti in rows}


@pytest.mark.parametrize("case", list(CASES))
async def test_a_run_that_cannot_be_read_fails_and_the_others_recover(
    make_settings: SettingsFactory, case: str
) -> None:
    sql, reason = CASES[case]
    settings = make_settings()
    runs = await _leave_waiting(settings)
    _damage(settings, sql)
    async with Engine.open(settings, dagbag=bag_of(landing("a"), landing("b"))) as engine:
        await until_waiting("b")
        damaged = await engine.store.get_run(runs["a"])
        states = await _states(engine, runs["a"])
        open_gate("b", "landed")
        with anyio.fail_after(30):
            other = await engine.wait(runs["b"])
    assert "a" not in triggerkit.waiting
    assert damaged is not None and damaged.state is RunState.FAILED
    assert states["extract"][0] is TaskState.SUCCESS
    for task_id in ("wait", "load"):
        state, error = states[task_id]
        assert state is TaskState.CANCELLED
        assert error is not None and error.startswith("the run cannot be recovered")
        assert reason in error
    assert other.state is RunState.SUCCESS


async def test_a_trigger_that_cannot_be_read_fails_its_task_alone(
    make_settings: SettingsFactory,
) -> None:
    settings = make_settings()
    runs = await _leave_waiting(settings)
    _damage(
        settings,
        f"UPDATE triggers SET kwargs = '[' WHERE task_id = 'wait' AND run_id = '{runs['a']}'",
    )
    async with Engine.open(settings, dagbag=bag_of(landing("a"), landing("b"))) as engine:
        await until_waiting("b")
        open_gate("b", "landed")
        with anyio.fail_after(30):
            failed = await engine.wait(runs["a"])
            other = await engine.wait(runs["b"])
        states = await _states(engine, runs["a"])
    assert failed.state is RunState.FAILED and other.state is RunState.SUCCESS
    state, error = states["wait"]
    assert state is TaskState.FAILED
    assert error is not None and "its stored trigger cannot be read: kwargs is not" in error
    assert states["load"][0] is TaskState.UPSTREAM_FAILED
