"""Helpers for the sensor tests that drive a real engine: waits on conditions, a watched clock.

Every wait here is event-driven with a deadline: it re-checks its condition each time the
engine announces a committed change (or the clock gains a sleeper), never on a wall-clock sleep.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio

from helpers import bag_of
from orchestrator.authoring.dag import DAG
from orchestrator.clock import FakeClock
from orchestrator.config import Settings
from orchestrator.scheduling.engine import Engine
from orchestrator.state import TaskState
from orchestrator.store.records import TaskInstanceRecord, TriggerRecord

SettingsFactory = Callable[..., Settings]
DEADLINE = 20.0  # seconds; generous, because a loaded CI machine is slow


class WatchedClock(FakeClock):
    """A FakeClock a test can wait on: `until_sleepers(n)` returns once n waits are pending."""

    def __init__(self) -> None:
        super().__init__()
        self._slept = anyio.Event()

    async def sleep_until(self, deadline: float) -> None:
        # Set before the parent registers the sleeper, which it does before its first await:
        # a waiter woken by this event runs only after the registration.
        self._slept.set()
        self._slept = anyio.Event()
        await super().sleep_until(deadline)

    async def until_sleepers(self, count: int) -> None:
        """Wait until `count` waits (engine timers, triggers' poll intervals) are pending."""
        with anyio.fail_after(DEADLINE):
            while self.sleepers < count:
                await self._slept.wait()


@asynccontextmanager
async def engine_for(settings: Settings, *dags: DAG, **kwargs: Any) -> AsyncIterator[Engine]:
    """An engine driving the DAGs built in the test."""
    async with Engine.open(settings, dagbag=bag_of(*dags), **kwargs) as engine:
        yield engine


async def until(engine: Engine, condition: Callable[[], Awaitable[bool]]) -> None:
    """Wait until `condition()` holds, checking it again after each change the engine commits."""
    with anyio.fail_after(DEADLINE):
        async with engine.subscribe() as changes:
            if await condition():
                return
            async for _ in changes:
                if await condition():
                    return


async def instance(engine: Engine, run_id: str, task_id: str) -> TaskInstanceRecord | None:
    for ti in await engine.store.list_task_instances(run_id):
        if ti.task_id == task_id:
            return ti
    return None


async def until_state(engine: Engine, run_id: str, task_id: str, state: TaskState) -> None:
    """Wait until the store shows the task instance in `state`."""

    async def reached() -> bool:
        ti = await instance(engine, run_id, task_id)
        return ti is not None and ti.state is state

    await until(engine, reached)


async def trigger_of(engine: Engine, run_id: str, task_id: str) -> TriggerRecord | None:
    """The stored trigger the task instance waits on, if it is deferred."""
    for row in await engine.store.list_triggers():
        if row.run_id == run_id and row.task_id == task_id:
            return row
    return None


async def results_of(engine: Engine, run_id: str) -> dict[str, Any]:
    """Each task's result, decoded, by task id."""
    stored = await engine.store.get_results(run_id)
    return {task_id: json.loads(text) for (task_id, _), text in stored.items()}


async def states_of(engine: Engine, run_id: str) -> dict[str, TaskState]:
    return {ti.task_id: ti.state for ti in await engine.store.list_task_instances(run_id)}


async def until_rescheduled(
    engine: Engine, run_id: str, task_id: str, after: float | None = None
) -> float:
    """Wait until a rescheduling sensor waits for a check later than `after`; its moment."""
    moments: list[float] = []

    async def rescheduled() -> bool:
        ti = await instance(engine, run_id, task_id)
        row = await trigger_of(engine, run_id, task_id)
        if ti is None or ti.state is not TaskState.DEFERRED or row is None:
            return False
        assert row.classpath == "triggers.time.TimeTrigger", row.classpath
        moments.append(float(row.kwargs["moment"]))
        return after is None or moments[-1] > after

    await until(engine, rescheduled)
    return moments[-1]
