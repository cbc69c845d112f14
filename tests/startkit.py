"""Helpers for tests of runs that start by themselves (run triggers, windows, schedules, reloads).

```python
async with starting_engine(settings, dag, clock=clock) as engine:
    land(inbox, "a.csv", "1,2\n")                     # written aside, renamed into place
    runs = await until_runs(engine, "ingest", 1)      # waits on the store, with a deadline
    await settle(engine)                              # everything told so far is handled
```

`settle` is how a test shows that something did *not* happen (no second run, no tick while
paused) without sleeping: it runs a one-task barrier DAG to its end, and the engine handles
every message that arrived before that run in the steps that drive it.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar
from zoneinfo import ZoneInfo

import anyio
import anyio.lowlevel

from helpers import bag_of
from orchestrator import DAG, task
from orchestrator.clock import FakeClock
from orchestrator.config import Settings
from orchestrator.scheduling.engine import Engine
from orchestrator.store.records import EventRecord, RunRecord, RunSourceRecord

T = TypeVar("T")
BARRIER = "barrier"
DEADLINE = 15.0  # seconds; generous for a loaded two-core machine


class NapClock(FakeClock):
    """A FakeClock that counts the waits that really sleep (a deadline still ahead).

    A poll loop or a backoff that goes to sleep shows up as one more nap, so a test can move
    time exactly when the sleeper it means is asleep.
    """

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        super().__init__(start)
        self.naps = 0

    async def sleep_until(self, deadline: float) -> None:
        if deadline > self.now():
            self.naps += 1
        await super().sleep_until(deadline)

    async def next_nap(self, after: int) -> None:
        """Wait until more than `after` naps have begun."""
        await until_true(lambda: self.naps > after)


def clock_at(text: str) -> NapClock:
    """A clock set to an ISO-8601 UTC moment, say "2026-03-10T12:30:00"."""
    return NapClock(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp())


def barrier_dag() -> DAG:
    with DAG(BARRIER) as dag:

        @task
        def mark() -> str:
            return "passed"

        mark()
    return dag


@asynccontextmanager
async def starting_engine(
    settings: Settings, *dags: DAG, clock: FakeClock | None = None
) -> AsyncIterator[Engine]:
    """An engine that starts runs by itself, as the daemon's does, plus the barrier DAG."""
    bag = bag_of(*dags, barrier_dag())
    async with Engine.open(settings, dagbag=bag, clock=clock, start_runs=True) as engine:
        yield engine


async def settle(engine: Engine) -> None:
    """Return once the engine has handled every message it got before this call.

    The barrier run is created, admitted and finished in steps that come after the messages
    already waiting (timers that fired, events posted), so once it ends they are handled.
    """
    with anyio.fail_after(DEADLINE):
        await engine.wait(await engine.trigger(BARRIER))


def land(directory: Path, name: str, content: str = "x\n") -> Path:
    """Write a file the way writers should: under a hidden name, then renamed into place."""
    target = directory / name
    hidden = directory / f".{name}.part"
    hidden.write_text(content)
    os.replace(hidden, target)
    return target


async def until(check: Callable[[], Awaitable[T | None]]) -> T:
    """Wait until `check()` gives a truthy value, and return it; fail after `DEADLINE`."""
    with anyio.fail_after(DEADLINE):
        while not (value := await check()):
            await anyio.lowlevel.checkpoint()
        return value


async def until_true(condition: Callable[[], bool]) -> None:
    """Wait until `condition()` holds (checked at each turn of the event loop)."""
    with anyio.fail_after(DEADLINE):
        while not condition():
            await anyio.lowlevel.checkpoint()


async def runs_of(engine: Engine, dag_id: str) -> list[RunRecord]:
    """The DAG's runs, oldest first."""
    runs = await engine.store.list_runs(dag_id=dag_id, limit=10_000)
    return sorted(runs, key=lambda run: (run.queued_at, run.logical_date or 0.0, run.run_id))


async def until_runs(
    engine: Engine, dag_id: str, count: int, *, finished: bool = True
) -> list[RunRecord]:
    """Wait until the DAG has `count` runs (all finished, unless told otherwise)."""

    async def check() -> list[RunRecord] | None:
        runs = await runs_of(engine, dag_id)
        done = all(run.state.finished for run in runs) or not finished
        return runs if len(runs) >= count and done else None

    runs = await until(check)
    assert len(runs) == count, f"expected {count} runs of {dag_id}, found {len(runs)}"
    return runs


async def events_of(engine: Engine, dag_id: str) -> list[EventRecord]:
    """The DAG's recorded events, oldest first."""
    events = await engine.store.list_events(dag_id=dag_id, limit=10_000)
    return sorted(events, key=lambda event: event.event_id or 0)


async def until_pending(engine: Engine, dag_id: str, count: int) -> list[EventRecord]:
    """Wait until `count` events of the DAG wait for their window (no run yet)."""

    async def check() -> list[EventRecord] | None:
        pending = [e for e in await engine.store.list_pending_events() if e.dag_id == dag_id]
        return pending if len(pending) >= count else None

    return await until(check)


async def source_of(engine: Engine, dag_id: str) -> RunSourceRecord:
    """The DAG's one run trigger, as the store shows it (`orchestrator triggers list`)."""
    sources = [s for s in await engine.store.list_run_sources() if s.dag_id == dag_id]
    assert len(sources) == 1, sources
    return sources[0]


async def until_source_error(engine: Engine, dag_id: str, failing: bool = True) -> str | None:
    """Wait until the DAG's run trigger shows an error (or, `failing=False`, none)."""

    async def check() -> RunSourceRecord | None:
        source = await source_of(engine, dag_id)
        return source if (source.error is not None) == failing else None

    return (await until(check)).error


def iso(moment: float | None, zone: str = "UTC") -> str:
    """A logical date as ISO-8601 in `zone`, for readable assertions."""
    assert moment is not None
    return datetime.fromtimestamp(moment, ZoneInfo(zone)).isoformat()
