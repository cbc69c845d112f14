"""The external-run trigger waits on another run through the change feed, and reads the store."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import aclosing, asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest

from orchestrator.changes import RunChanged, TaskChanged
from orchestrator.clock import FakeClock
from orchestrator.errors import StoreError, TriggerError, TriggerLoadError
from orchestrator.scheduling.change_feed import ChangeFeed
from orchestrator.state import RunState, TaskState
from orchestrator.store import RunRecord, SqliteStore, TaskInstanceRecord, WriteBatch, open_store
from triggers.base import StateReader, TriggerEvent, TriggerRuntime, load_trigger, set_runtime
from triggers.external import ExternalRunTrigger

START = 1_800_000_000.0
LOAD = ("r1", "load", -1)
TO_RUNNING = (TaskState.NONE, TaskState.SCHEDULED, TaskState.QUEUED, TaskState.RUNNING)


@contextmanager
def runtime(store: StateReader | None, clock: FakeClock, feed: ChangeFeed | None) -> Iterator[None]:
    """Make a runtime current for this task and the tasks it starts."""
    changes = feed.subscribe if feed is not None else None
    token = set_runtime(TriggerRuntime(clock=clock, state=store, changes=changes))
    try:
        yield
    finally:
        token.var.reset(token)


async def create_run(
    store: SqliteStore,
    run_id: str,
    *,
    dag_id: str = "etl",
    tasks: Sequence[tuple[str, int]] = (("extract", -1), ("load", -1)),
    logical_date: float | None = None,
    queued_at: float = START,
) -> None:
    run = RunRecord(
        run_id=run_id,
        dag_id=dag_id,
        state=RunState.QUEUED,
        conf={},
        logical_date=logical_date,
        queued_at=queued_at,
    )
    instances = [TaskInstanceRecord(run_id=run_id, task_id=t, map_index=i) for t, i in tasks]
    batch = WriteBatch()
    batch.create_run(run, instances)
    await store.commit(batch)


async def move_run(store: SqliteStore, run_id: str, *path: RunState) -> None:
    """Commit the run's moves along `path` (its current state first), one after the other."""
    for old, new in itertools.pairwise(path):
        batch = WriteBatch()
        batch.set_run_state(run_id, old, new, at=START)
        await store.commit(batch)


async def move_task(store: SqliteStore, key: tuple[str, str, int], *path: TaskState) -> None:
    """Commit the task instance's moves along `path` (its current state first)."""
    for old, new in itertools.pairwise(path):
        batch = WriteBatch()
        batch.set_task_state(key, old, new)
        await store.commit(batch)


def run_changed(run_id: str, state: RunState, dag_id: str = "etl") -> RunChanged:
    return RunChanged(run_id=run_id, dag_id=dag_id, state=state, at=START)


def task_changed(run_id: str, task_id: str, state: TaskState, map_index: int = -1) -> TaskChanged:
    return TaskChanged(
        run_id=run_id,
        dag_id="etl",
        task_id=task_id,
        map_index=map_index,
        state=state,
        try_number=1,
        at=START,
    )


async def first_event(trigger: ExternalRunTrigger) -> TriggerEvent:
    with anyio.fail_after(10):
        async with aclosing(trigger.run()) as events:
            return await anext(events)


async def wait_until(condition: Callable[[], bool]) -> None:
    with anyio.fail_after(10):
        while not condition():
            await anyio.lowlevel.checkpoint()


Outcomes = list[TriggerEvent | TriggerError]


@asynccontextmanager
async def waiting(
    trigger: ExternalRunTrigger, clock: FakeClock, feed: ChangeFeed | None
) -> AsyncIterator[Outcomes]:
    """Run `trigger` in the background until it is waiting; leaving waits for it to end.

    It is waiting once its periodic re-check sleeps on the clock: the first store read is done
    and it listens to the feed.
    """
    outcomes: Outcomes = []

    async def consume() -> None:
        try:
            async for event in trigger.run():
                outcomes.append(event)
        except TriggerError as error:
            outcomes.append(error)

    with anyio.fail_after(10):
        async with anyio.create_task_group() as task_group:
            task_group.start_soon(consume)
            await wait_until(lambda: clock.sleepers == 1)
            yield outcomes


def only_event(outcomes: Outcomes) -> TriggerEvent:
    assert len(outcomes) == 1 and isinstance(outcomes[0], TriggerEvent), outcomes
    return outcomes[0]


def only_error(outcomes: Outcomes) -> str:
    assert len(outcomes) == 1 and isinstance(outcomes[0], TriggerError), outcomes
    return str(outcomes[0])


# -- a whole run -----------------------------------------------------------------------------------


async def test_a_run_already_in_the_state_fires_at_once(tmp_path: Path) -> None:
    clock, feed = FakeClock(START), ChangeFeed()
    trigger = ExternalRunTrigger(dag_id="etl", run_id="r1")
    async with open_store(tmp_path / "state") as store:
        await create_run(store, "r1")
        await move_run(store, "r1", RunState.QUEUED, RunState.RUNNING, RunState.SUCCESS)
        with runtime(store, clock, feed):
            event = await first_event(trigger)
            polled = await trigger.poll()
    expected = {"dag_id": "etl", "run_id": "r1", "task_id": None, "map_index": -1}
    assert event == TriggerEvent({**expected, "state": "success"}, dedup_key="etl/r1//success")
    assert polled == event
    assert (feed.listening, clock.sleepers) == (0, 0)  # unsubscribed, no timer left


async def test_a_run_reaching_the_state_later_fires_on_its_change(tmp_path: Path) -> None:
    clock, feed = FakeClock(START), ChangeFeed()
    trigger = ExternalRunTrigger(dag_id="etl", run_id="r1")
    async with open_store(tmp_path / "state") as store:
        await create_run(store, "r1")
        await move_run(store, "r1", RunState.QUEUED, RunState.RUNNING)
        with runtime(store, clock, feed):
            assert await trigger.poll() is None
            async with waiting(trigger, clock, feed) as outcomes:
                assert outcomes == []
                feed.publish([run_changed("r0", RunState.SUCCESS)])  # another run: ignored
                await move_run(store, "r1", RunState.RUNNING, RunState.SUCCESS)
                feed.publish([run_changed("r1", RunState.SUCCESS)])
    # The clock never moved, so the feed alone woke it.
    assert only_event(outcomes).dedup_key == "etl/r1//success"
    assert (feed.listening, clock.sleepers) == (0, 0)


async def test_the_state_in_a_change_for_the_run_is_believed_without_a_store_read(
    tmp_path: Path,
) -> None:
    clock, feed = FakeClock(START), ChangeFeed()
    trigger = ExternalRunTrigger(dag_id="etl", run_id="r1", states=("running",))
    async with open_store(tmp_path / "state") as store:
        await create_run(store, "r1")
        with runtime(store, clock, feed):
            async with waiting(trigger, clock, feed) as outcomes:
                feed.publish([run_changed("r1", RunState.RUNNING)])  # the store still says queued
    assert only_event(outcomes).payload["state"] == "running"


async def test_a_run_that_failed_raises_naming_the_run_and_the_state(tmp_path: Path) -> None:
    clock, feed = FakeClock(START), ChangeFeed()
    trigger = ExternalRunTrigger(dag_id="etl", run_id="r1")
    async with open_store(tmp_path / "state") as store:
        await create_run(store, "r1")
        await move_run(store, "r1", RunState.QUEUED, RunState.RUNNING, RunState.FAILED)
        with runtime(store, clock, feed):
            with pytest.raises(TriggerError, match=r"^run r1 of DAG etl ended in failed$"):
                await first_event(trigger)
            with pytest.raises(TriggerError, match="ended in failed"):
                await trigger.poll()
    assert feed.listening == 0


async def test_a_run_that_fails_while_waited_on_raises(tmp_path: Path) -> None:
    clock, feed = FakeClock(START), ChangeFeed()
    trigger = ExternalRunTrigger(dag_id="etl", run_id="r1")
    async with open_store(tmp_path / "state") as store:
        await create_run(store, "r1")
        with runtime(store, clock, feed):
            async with waiting(trigger, clock, feed) as outcomes:
                await move_run(store, "r1", RunState.QUEUED, RunState.RUNNING, RunState.FAILED)
                feed.publish([run_changed("r1", RunState.RUNNING)])
                feed.publish([run_changed("r1", RunState.FAILED)])
    assert only_error(outcomes) == "run r1 of DAG etl ended in failed"


async def test_a_final_state_it_does_not_wait_for_raises_instead_of_waiting_forever(
    tmp_path: Path,
) -> None:
    clock, feed = FakeClock(START), ChangeFeed()
    trigger = ExternalRunTrigger(dag_id="etl", run_id="r1")
    async with open_store(tmp_path / "state") as store:
        await create_run(store, "r1")
        await move_run(store, "r1", RunState.QUEUED, RunState.CANCELLED)
        with runtime(store, clock, feed), pytest.raises(TriggerError) as caught:
            await first_event(trigger)
    assert str(caught.value) == (
        "run r1 of DAG etl ended in cancelled, which is final: it will never be success"
    )


async def test_a_run_unknown_at_first_is_found_when_it_is_created(tmp_path: Path) -> None:
    clock, feed = FakeClock(START), ChangeFeed()
    trigger = ExternalRunTrigger(dag_id="etl")
    async with open_store(tmp_path / "state") as store:
        await create_run(store, "other-1", dag_id="report")
        await move_run(store, "other-1", RunState.QUEUED, RunState.RUNNING, RunState.SUCCESS)
        with runtime(store, clock, feed):
            assert await trigger.poll() is None  # no run of etl yet
            async with waiting(trigger, clock, feed) as outcomes:
                feed.publish([run_changed("other-1", RunState.SUCCESS, dag_id="report")])
                await create_run(store, "r7")
                await move_run(store, "r7", RunState.QUEUED, RunState.RUNNING)
                feed.publish([run_changed("r7", RunState.RUNNING)])
                await move_run(store, "r7", RunState.RUNNING, RunState.SUCCESS)
                feed.publish([run_changed("r7", RunState.SUCCESS)])
    assert only_event(outcomes).payload["run_id"] == "r7"


async def test_only_the_periodic_check_sees_a_change_from_outside_the_feed(tmp_path: Path) -> None:
    clock, feed = FakeClock(START), ChangeFeed()
    trigger = ExternalRunTrigger(dag_id="etl", run_id="r1", check_interval=30)
    async with open_store(tmp_path / "state") as store:
        await create_run(store, "r1")
        with runtime(store, clock, feed):
            async with waiting(trigger, clock, feed) as outcomes:
                # Another process ran it: committed, but never announced in this feed.
                await move_run(store, "r1", RunState.QUEUED, RunState.RUNNING, RunState.SUCCESS)
                clock.advance(29)
                await anyio.lowlevel.checkpoint()
                assert (outcomes, clock.sleepers) == ([], 1)
                clock.advance(1)
    assert only_event(outcomes).dedup_key == "etl/r1//success"


async def test_without_a_feed_the_periodic_check_does_the_waiting(tmp_path: Path) -> None:
    clock = FakeClock(START)
    trigger = ExternalRunTrigger(dag_id="etl", run_id="r1", check_interval=5)
    async with open_store(tmp_path / "state") as store:
        await create_run(store, "r1")
        with runtime(store, clock, feed=None):
            async with waiting(trigger, clock, feed=None) as outcomes:
                await move_run(store, "r1", RunState.QUEUED, RunState.RUNNING, RunState.SUCCESS)
                clock.advance(5)
    assert only_event(outcomes).payload["state"] == "success"


async def test_the_newest_run_or_the_one_at_a_logical_date_is_chosen(tmp_path: Path) -> None:
    clock = FakeClock(START)
    async with open_store(tmp_path / "state") as store:
        await create_run(store, "jan", logical_date=1000.0, queued_at=START)
        await create_run(store, "feb", logical_date=2000.0, queued_at=START + 1)
        await create_run(store, "jan-again", logical_date=1000.0, queued_at=START + 2)
        await create_run(store, "manual", queued_at=START + 3)
        await move_run(store, "jan", RunState.QUEUED, RunState.RUNNING, RunState.SUCCESS)
        await move_run(store, "feb", RunState.QUEUED, RunState.RUNNING, RunState.SUCCESS)
        with runtime(store, clock, feed=None):
            queued = ExternalRunTrigger(dag_id="etl", states=("queued",))
            jan = ExternalRunTrigger(dag_id="etl", logical_date=1000.0, states=("queued",))
            feb = ExternalRunTrigger(dag_id="etl", logical_date=2000.0)
            never = ExternalRunTrigger(dag_id="etl", logical_date=3000.0)
            found = [await trigger.poll() for trigger in (queued, jan, feb, never)]
    run_ids = [event.payload["run_id"] if event else None for event in found]
    assert run_ids == ["manual", "jan-again", "feb", None]


async def test_a_logical_date_is_found_past_the_first_page_of_runs(tmp_path: Path) -> None:
    clock = FakeClock(START)
    trigger = ExternalRunTrigger(dag_id="etl", logical_date=1000.0, states=("queued",))
    batch = WriteBatch()
    for number in range(250):  # the oldest is the one at the logical date
        run = RunRecord(
            run_id=f"r{number:03}",
            dag_id="etl",
            state=RunState.QUEUED,
            conf={},
            logical_date=1000.0 if number == 0 else 2000.0 + number,
            queued_at=START + number,
        )
        batch.create_run(run, [])
    async with open_store(tmp_path / "state") as store:
        await store.commit(batch)
        with runtime(store, clock, feed=None):
            event = await trigger.poll()
    assert event is not None and event.payload["run_id"] == "r000"


async def test_a_named_run_created_while_waited_on_is_found_by_its_first_change(
    tmp_path: Path,
) -> None:
    clock, feed = FakeClock(START), ChangeFeed()
    trigger = ExternalRunTrigger(dag_id="etl", run_id="r9", task_id="load")
    async with open_store(tmp_path / "state") as store:
        with runtime(store, clock, feed):
            async with waiting(trigger, clock, feed) as outcomes:
                await create_run(store, "r9")
                await move_task(store, ("r9", "load", -1), *TO_RUNNING, TaskState.SUCCESS)
                feed.publish([task_changed("r8", "load", TaskState.SUCCESS)])  # not the run named
                feed.publish([task_changed("r9", "extract", TaskState.SCHEDULED)])
    assert only_event(outcomes).dedup_key == "etl/r9/load/success"


async def test_a_run_id_of_another_dag_is_an_error_saying_so(tmp_path: Path) -> None:
    clock = FakeClock(START)
    async with open_store(tmp_path / "state") as store:
        await create_run(store, "r1", dag_id="report")
        with runtime(store, clock, feed=None), pytest.raises(TriggerError) as caught:
            await ExternalRunTrigger(dag_id="etl", run_id="r1").poll()
    assert str(caught.value) == "run r1 is a run of DAG report, not of etl; check dag_id and run_id"


@pytest.mark.parametrize("wait", ["run", "poll"])
async def test_without_the_engine_state_it_raises_saying_what_it_needs(wait: str) -> None:
    trigger = ExternalRunTrigger(dag_id="etl")
    with runtime(None, FakeClock(START), ChangeFeed()), pytest.raises(TriggerError) as caught:
        await (first_event(trigger) if wait == "run" else trigger.poll())
    assert "needs the engine's state" in str(caught.value)


async def test_closing_a_waiting_trigger_unsubscribes_and_forgets_its_timer(
    tmp_path: Path,
) -> None:
    clock, feed = FakeClock(START), ChangeFeed()
    async with open_store(tmp_path / "state") as store:
        with runtime(store, clock, feed), anyio.fail_after(10):
            async with anyio.create_task_group() as task_group:
                task_group.start_soon(first_event, ExternalRunTrigger(dag_id="etl"))
                await wait_until(lambda: clock.sleepers == 1)
                assert feed.listening == 1
                task_group.cancel_scope.cancel()
    assert (feed.listening, clock.sleepers) == (0, 0)


class BreakableReader:
    """The real store, until the test breaks it: then every read raises `StoreError`."""

    def __init__(self, store: SqliteStore) -> None:
        self.store = store
        self.broken = False

    async def get_run(self, run_id: str) -> RunRecord | None:
        self._check()
        return await self.store.get_run(run_id)

    async def list_runs(self, *, dag_id: str | None = None, limit: int = 50) -> list[RunRecord]:
        self._check()
        return await self.store.list_runs(dag_id=dag_id, limit=limit)

    async def list_task_instances(self, run_id: str) -> list[TaskInstanceRecord]:
        self._check()
        return await self.store.list_task_instances(run_id)

    def _check(self) -> None:
        if self.broken:
            raise StoreError("the state database is gone")


async def test_a_store_error_while_waiting_comes_out_as_itself(tmp_path: Path) -> None:
    clock, feed = FakeClock(START), ChangeFeed()
    trigger = ExternalRunTrigger(dag_id="etl", run_id="r1")
    async with open_store(tmp_path / "state") as store:
        await create_run(store, "r1")
        reader = BreakableReader(store)

        async def break_the_store_once_waiting() -> None:
            await wait_until(lambda: clock.sleepers == 1)
            reader.broken = True
            clock.advance(trigger.check_interval)

        with runtime(reader, clock, feed), anyio.fail_after(10):
            async with anyio.create_task_group() as task_group:
                task_group.start_soon(break_the_store_once_waiting)
                with pytest.raises(StoreError, match="the state database is gone"):
                    await first_event(trigger)  # not an ExceptionGroup around it
    assert (feed.listening, clock.sleepers) == (0, 0)


# -- one task of a run -----------------------------------------------------------------------------


async def test_a_task_reaching_the_state_fires_and_other_tasks_do_not(tmp_path: Path) -> None:
    clock, feed = FakeClock(START), ChangeFeed()
    trigger = ExternalRunTrigger(dag_id="etl", run_id="r1", task_id="load")
    async with open_store(tmp_path / "state") as store:
        await create_run(store, "r1")
        with runtime(store, clock, feed):
            async with waiting(trigger, clock, feed) as outcomes:
                await move_task(store, ("r1", "extract", -1), *TO_RUNNING, TaskState.SUCCESS)
                feed.publish([task_changed("r1", "extract", TaskState.SUCCESS)])
                feed.publish([run_changed("r1", RunState.RUNNING)])
                await move_task(store, LOAD, *TO_RUNNING, TaskState.SUCCESS)
                feed.publish([task_changed("r1", "load", TaskState.RUNNING)])
                feed.publish([task_changed("r1", "load", TaskState.SUCCESS)])
    assert outcomes == [
        TriggerEvent(
            {"dag_id": "etl", "run_id": "r1", "task_id": "load", "map_index": -1}
            | {"state": "success"},
            dedup_key="etl/r1/load/success",
        )
    ]


async def test_a_task_that_cannot_run_raises_naming_the_task(tmp_path: Path) -> None:
    clock, feed = FakeClock(START), ChangeFeed()
    trigger = ExternalRunTrigger(dag_id="etl", run_id="r1", task_id="load")
    async with open_store(tmp_path / "state") as store:
        await create_run(store, "r1")
        with runtime(store, clock, feed):
            async with waiting(trigger, clock, feed) as outcomes:
                await move_task(store, LOAD, TaskState.NONE, TaskState.UPSTREAM_FAILED)
                feed.publish([task_changed("r1", "load", TaskState.UPSTREAM_FAILED)])
    assert only_error(outcomes) == "task load of run r1 (DAG etl) ended in upstream_failed"


async def test_one_mapped_task_instance_is_told_apart_from_its_siblings(tmp_path: Path) -> None:
    clock = FakeClock(START)
    trigger = ExternalRunTrigger(dag_id="etl", run_id="r1", task_id="fan", map_index=1)
    async with open_store(tmp_path / "state") as store:
        await create_run(store, "r1", tasks=[("fan", 0), ("fan", 1)])
        with runtime(store, clock, feed=None):
            await move_task(store, ("r1", "fan", 0), *TO_RUNNING, TaskState.SUCCESS)
            assert await trigger.poll() is None
            await move_task(store, ("r1", "fan", 1), *TO_RUNNING, TaskState.FAILED)
            with pytest.raises(TriggerError, match=r"^task fan\[1\] of run r1 \(DAG etl\) ended"):
                await trigger.poll()


async def test_a_task_the_finished_run_never_had_is_an_error(tmp_path: Path) -> None:
    clock, feed = FakeClock(START), ChangeFeed()
    trigger = ExternalRunTrigger(dag_id="etl", run_id="r1", task_id="laod")  # a typo
    async with open_store(tmp_path / "state") as store:
        await create_run(store, "r1")
        with runtime(store, clock, feed):
            async with waiting(trigger, clock, feed) as outcomes:
                await move_run(store, "r1", RunState.QUEUED, RunState.RUNNING, RunState.SUCCESS)
                feed.publish([run_changed("r1", RunState.SUCCESS)])
    assert only_error(outcomes) == (
        "task laod of run r1 (DAG etl) does not exist and its run ended in success;"
        " check task_id and map_index"
    )


# -- the trigger as a value ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "trigger",
    [
        ExternalRunTrigger(dag_id="etl"),
        ExternalRunTrigger(dag_id="etl", logical_date=1000, check_interval=5),
        ExternalRunTrigger(
            dag_id="etl",
            run_id="r1",
            task_id="fan",
            map_index=3,
            states=("success", "skipped"),
            failed_states=("failed",),
        ),
    ],
    ids=["newest-run", "logical-date", "mapped-task"],
)
def test_a_round_trip_gives_the_same_trigger(trigger: ExternalRunTrigger) -> None:
    classpath, kwargs = trigger.serialize()
    assert classpath == "triggers.external.ExternalRunTrigger"
    assert load_trigger(classpath, kwargs) == trigger


def test_the_default_failed_states_fit_the_mode() -> None:
    assert ExternalRunTrigger(dag_id="etl").failed_states == ("failed",)
    task = ExternalRunTrigger(dag_id="etl", task_id="load")
    assert task.failed_states == ("failed", "upstream_failed")
    listed = ExternalRunTrigger(dag_id="etl", states=[TaskState.SUCCESS])  # type: ignore[arg-type]
    assert listed.states == ("success",)  # a tuple of plain names, as a round trip gives


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"states": ("succes",)}, "states names 'succes', which is not a run state; a run can be"),
        ({"states": ("upstream_failed",)}, "'upstream_failed', which is not a run state"),
        (
            {"task_id": "load", "failed_states": ("broken",)},
            "failed_states names 'broken', which is not a task instance state",
        ),
        ({"states": "success"}, "states must be a tuple of state names such as ('success',)"),
        ({"states": ()}, "states must name at least one state to wait for"),
        ({"failed_states": ("success",)}, "success is in both states and failed_states"),
        ({"dag_id": ""}, "dag_id must be a non-empty string, not ''"),
        ({"run_id": 7}, "run_id must be a non-empty string, not 7"),
        ({"map_index": 2}, "map_index=2 needs a task_id"),
        ({"task_id": "fan", "map_index": -2}, "map_index must be -1 (not expanded) or an index"),
        ({"check_interval": 0}, "check_interval must be a number of seconds above 0, not 0"),
        ({"check_interval": float("inf")}, "check_interval must be a number of seconds above 0"),
        ({"logical_date": "2026-01-01"}, "logical_date must be seconds since the epoch"),
        ({"logical_date": 10**400}, "logical_date must be seconds since the epoch"),
    ],
)
def test_bad_arguments_are_refused_with_a_sentence_saying_why(
    kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError) as caught:
        ExternalRunTrigger(**{"dag_id": "etl", **kwargs})
    assert message in str(caught.value)


def test_load_trigger_reports_a_bad_state_name_as_a_load_error() -> None:
    with pytest.raises(TriggerLoadError, match="states names 'done'"):
        load_trigger("triggers.external.ExternalRunTrigger", {"dag_id": "etl", "states": ["done"]})
