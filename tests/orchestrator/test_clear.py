"""Clearing task instances (Airflow's "clear") and cancelling runs, on a real engine and store.

The engine runs in-process (the fast mode); runs that must outlive an engine are left in the
store by closing it, then edited in the store alone, as the CLI does when no daemon runs.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
from anyio.streams.memory import MemoryObjectReceiveStream

from helpers import bag_of
from orchestrator import DAG, task
from orchestrator.changes import Change, RunChanged, TaskChanged
from orchestrator.config import Settings
from orchestrator.errors import RunError, RunNotFoundError
from orchestrator.execution.results import decode_result
from orchestrator.scheduling.engine import Engine
from orchestrator.scheduling.run_edits import cancel_stored_run, clear_stored_run, stored_run
from orchestrator.state import RunState, TaskState
from orchestrator.store import Store, TaskInstanceRecord, open_store

SettingsFactory = Callable[..., Settings]
DEADLINE = 15


async def finish(engine: Engine, dag_id: str) -> str:
    """Trigger a run of `dag_id`, wait until it finished, and return its id."""
    with anyio.fail_after(DEADLINE):
        run_id = await engine.trigger(dag_id)
        await engine.wait(run_id)
    return run_id


async def instances(store: Store, run_id: str) -> dict[str, TaskInstanceRecord]:
    """The run's task instances by label (`task`, or `task[2]` for an expanded one)."""
    rows = await store.list_task_instances(run_id)
    return {ti.task_id if ti.map_index < 0 else f"{ti.task_id}[{ti.map_index}]": ti for ti in rows}


async def results(store: Store, run_id: str) -> dict[str, Any]:
    stored = await store.get_results(run_id)
    return {
        (task_id if index < 0 else f"{task_id}[{index}]"): decode_result(text)
        for (task_id, index), text in stored.items()
    }


def tries_of(rows: dict[str, TaskInstanceRecord]) -> dict[str, int]:
    return {name: ti.try_number for name, ti in rows.items()}


def counting_chain() -> tuple[DAG, dict[str, int]]:
    """extract >> transform >> load; each counts its calls, transform returns its count."""
    calls = {"extract": 0, "transform": 0, "load": 0}

    @task
    def extract() -> int:
        calls["extract"] += 1
        return 5

    @task
    def transform(value: int) -> int:
        calls["transform"] += 1
        return value * 10 + calls["transform"]

    @task
    def load(value: int) -> int:
        calls["load"] += 1
        return value

    with DAG("etl") as dag:
        load(transform(extract()))
    return dag, calls


def blocking_dag(gate: dict[str, Any], side: Callable[[], Any] | None = None) -> DAG:
    """first >> wait: `wait` blocks on gate["release"] while gate["block"] is true.

    `side` adds a task of its own, independent of the other two.
    """

    @task
    def first() -> int:
        return 1

    @task
    async def wait(value: int) -> int:
        if gate["block"]:
            gate["started"].set()
            await gate["release"].wait()
        return value + 1

    with DAG("gated") as dag:
        wait(first())
        if side is not None:
            side()
    return dag


def new_gate() -> dict[str, Any]:
    return {"block": True, "started": anyio.Event(), "release": anyio.Event()}


async def side_succeeded(changes: MemoryObjectReceiveStream[Change]) -> None:
    async for change in changes:
        if isinstance(change, TaskChanged) and change.task_id == "side" and change.state.finished:
            return


# -- clearing a finished run --------------------------------------------------------------------


async def test_a_failed_task_cleared_after_its_fix_runs_again_and_the_run_succeeds(
    make_settings: SettingsFactory,
) -> None:
    fixed = False

    @task(retries=1, retry_delay=0)
    def flaky() -> str:
        print("trying")
        if not fixed:
            raise ValueError("the input file is missing")
        return "ok"

    @task
    def report(value: str) -> str:
        return value.upper()

    outcomes: list[str] = []
    succeeded = anyio.Event()

    def on_success(run_id: str) -> None:
        outcomes.append("success")
        succeeded.set()

    def on_failure(run_id: str) -> None:
        outcomes.append("failure")

    with DAG("fixme", on_failure=on_failure, on_success=on_success) as dag:
        report(flaky())
    settings = make_settings()
    async with Engine.open(settings, dagbag=bag_of(dag)) as engine:
        run_id = await finish(engine, "fixme")
        failed = await instances(engine.store, run_id)
        fixed = True
        cleared = await engine.clear(run_id, ["flaky"])
        with anyio.fail_after(DEADLINE):
            record = await engine.wait(run_id)
            await succeeded.wait()
        rows = await instances(engine.store, run_id)
        tries = await engine.store.list_tries(run_id, "flaky")
        values = await results(engine.store, run_id)
    assert (failed["flaky"].state, failed["report"].state) == ("failed", "upstream_failed")
    assert cleared == [(run_id, "flaky", -1), (run_id, "report", -1)]
    assert record.state is RunState.SUCCESS and record.ended_at is not None
    assert tries_of(rows) == {"flaky": 3, "report": 1}
    assert rows["flaky"].max_tries == 4  # two tries so far, then its retry given back
    assert rows["flaky"].error is None
    assert [t.state for t in tries] == ["up_for_retry", "failed", "success"]
    assert all(Path(t.log_path).read_text().count("trying") == 1 for t in tries)
    assert values == {"flaky": "ok", "report": "OK"}
    assert outcomes == ["failure", "success"]  # the run's callbacks, once per ending


async def test_clearing_a_middle_task_reruns_it_and_its_downstream_not_its_upstream(
    make_settings: SettingsFactory,
) -> None:
    dag, calls = counting_chain()
    seen: list[Change] = []
    async with Engine.open(make_settings(), dagbag=bag_of(dag)) as engine:
        run_id = await finish(engine, "etl")
        async with engine.subscribe() as changes:
            cleared = await engine.clear(run_id, ["transform"])
            with anyio.fail_after(DEADLINE):
                async for change in changes:
                    seen.append(change)
                    if isinstance(change, RunChanged) and change.state.finished:
                        break
        rows = await instances(engine.store, run_id)
        values = await results(engine.store, run_id)
    assert [key[1] for key in cleared] == ["transform", "load"]
    assert calls == {"extract": 1, "transform": 2, "load": 2}
    assert tries_of(rows) == {"extract": 1, "transform": 2, "load": 2}
    assert values == {"extract": 5, "transform": 52, "load": 52}  # load read the new result
    run_states = [c.state for c in seen if isinstance(c, RunChanged)]
    assert run_states == [RunState.QUEUED, RunState.RUNNING, RunState.SUCCESS]
    reset = [
        (c.task_id, c.try_number)
        for c in seen
        if isinstance(c, TaskChanged) and c.state is TaskState.NONE
    ]
    assert reset == [("transform", 1), ("load", 1)]  # announced, with the tries so far


async def test_without_downstream_only_the_named_task_runs_again(
    make_settings: SettingsFactory,
) -> None:
    dag, calls = counting_chain()
    async with Engine.open(make_settings(), dagbag=bag_of(dag)) as engine:
        run_id = await finish(engine, "etl")
        cleared = await engine.clear(run_id, ["transform"], downstream=False)
        with anyio.fail_after(DEADLINE):
            record = await engine.wait(run_id)
        rows = await instances(engine.store, run_id)
        values = await results(engine.store, run_id)
    assert cleared == [(run_id, "transform", -1)]
    assert record.state is RunState.SUCCESS
    assert calls == {"extract": 1, "transform": 2, "load": 1}
    assert tries_of(rows) == {"extract": 1, "transform": 2, "load": 1}
    assert values == {"extract": 5, "transform": 52, "load": 51}  # load kept its result


async def test_a_finished_run_cleared_waits_for_max_active_runs_like_any_run(
    make_settings: SettingsFactory,
) -> None:
    gate = new_gate()
    dag = blocking_dag(gate)
    dag.max_active_runs = 1
    gate["block"] = False
    async with Engine.open(make_settings(), dagbag=bag_of(dag)) as engine:
        done = await finish(engine, "gated")
        gate["block"] = True
        with anyio.fail_after(DEADLINE):
            blocking = await engine.trigger("gated")
            await gate["started"].wait()
        await engine.clear(done, ["first"])
        waiting = await engine.store.get_run(done)
        with anyio.fail_after(DEADLINE):  # cancelled while queued again, then cleared again
            await engine.cancel(done)
            cancelled = await engine.wait(done)
        cancelled_rows = await instances(engine.store, done)
        await engine.clear(done, ["first"])
        gate["block"] = False
        gate["release"].set()
        with anyio.fail_after(DEADLINE):
            await engine.wait(blocking)
            record = await engine.wait(done)
        rows = await instances(engine.store, done)
    assert waiting is not None and (waiting.state, waiting.ended_at) == (RunState.QUEUED, None)
    assert cancelled.state is RunState.CANCELLED
    assert {name: ti.state for name, ti in cancelled_rows.items()} == {
        "first": "cancelled",
        "wait": "cancelled",
    }
    assert record.state is RunState.SUCCESS
    assert record.started_at is not None and record.ended_at is not None
    assert tries_of(rows) == {"first": 2, "wait": 2}


async def test_in_a_run_still_going_only_the_cleared_instances_run_again(
    make_settings: SettingsFactory,
) -> None:
    gate = new_gate()
    calls: list[int] = []

    @task
    def side() -> int:
        calls.append(1)
        return len(calls)

    dag = blocking_dag(gate, side)
    async with (
        Engine.open(make_settings(), dagbag=bag_of(dag)) as engine,
        engine.subscribe() as changes,
    ):
        with anyio.fail_after(DEADLINE):
            run_id = await engine.trigger("gated")
            await gate["started"].wait()
            await side_succeeded(changes)
            cleared = await engine.clear(run_id, ["side"])
            await side_succeeded(changes)
        gate["release"].set()
        with anyio.fail_after(DEADLINE):
            record = await engine.wait(run_id)
        rows = await instances(engine.store, run_id)
    assert cleared == [(run_id, "side", -1)]
    assert record.state is RunState.SUCCESS
    assert tries_of(rows) == {"first": 1, "wait": 1, "side": 2}


def fan_dag(lists: list[int | None]) -> DAG:
    """shards >> double.expand(x=shards) >> total; shards gives `lists` in turn (None: fails)."""

    @task
    def shards() -> list[int]:
        size = lists.pop(0)
        if size is None:
            raise RuntimeError("no shards yet")
        return list(range(size))

    @task
    def double(x: int) -> int:
        return 2 * x

    @task
    def total(values: list[int]) -> int:
        return sum(values)

    with DAG("fan") as dag:
        total(double.expand(x=shards()))
    return dag


async def clear_fan(settings: Settings, lists: list[int | None]) -> tuple[Any, ...]:
    """Run the fan DAG, clear `shards` and what is downstream; the instances before and after."""
    async with Engine.open(settings, dagbag=bag_of(fan_dag(lists))) as engine:
        run_id = await finish(engine, "fan")
        before = await instances(engine.store, run_id)
        cleared = await engine.clear(run_id, ["shards"])
        with anyio.fail_after(DEADLINE):
            record = await engine.wait(run_id)
        after = await instances(engine.store, run_id)
        values = await results(engine.store, run_id)
    return before, [key[1:] for key in cleared], record, after, values


async def test_a_cleared_expanded_task_expands_again_and_its_elements_keep_their_tries(
    make_settings: SettingsFactory,
) -> None:
    before, cleared, record, after, values = await clear_fan(make_settings(), [3, 2])
    assert sorted(before) == ["double[0]", "double[1]", "double[2]", "shards", "total"]
    assert cleared == [("shards", -1), ("double", 0), ("double", 1), ("double", 2), ("total", -1)]
    assert record.state is RunState.SUCCESS
    # The list is shorter now: element 2 is gone, with its try; the others go on.
    assert tries_of(after) == {"shards": 2, "double[0]": 2, "double[1]": 2, "total": 2}
    assert values == {"shards": [0, 1], "double[0]": 0, "double[1]": 2, "total": 2}


async def test_a_task_that_never_expanded_expands_once_cleared(
    make_settings: SettingsFactory,
) -> None:
    before, cleared, record, after, values = await clear_fan(make_settings(), [None, 2])
    assert {name: ti.state for name, ti in before.items()} == {
        "shards": "failed",
        "double": "upstream_failed",  # its placeholder: it never expanded
        "total": "upstream_failed",
    }
    assert cleared == [("shards", -1), ("double", -1), ("total", -1)]
    assert record.state is RunState.SUCCESS
    assert tries_of(after) == {"shards": 2, "double[0]": 1, "double[1]": 1, "total": 1}
    assert values["total"] == 2


async def test_expanded_elements_cleared_keep_their_tries_when_they_cannot_run(
    make_settings: SettingsFactory,
) -> None:
    _, _, record, after, values = await clear_fan(make_settings(), [2, None])
    assert record.state is RunState.FAILED
    assert {name: (ti.state, ti.try_number) for name, ti in after.items()} == {
        "shards": ("failed", 2),
        "double[0]": ("upstream_failed", 1),
        "double[1]": ("upstream_failed", 1),
        "total": ("upstream_failed", 1),
    }
    assert values == {}  # no stale result survives the clear


# -- refusals -----------------------------------------------------------------------------------


async def test_clearing_a_running_task_is_refused_with_what_to_do(
    make_settings: SettingsFactory,
) -> None:
    gate = new_gate()
    async with Engine.open(make_settings(), dagbag=bag_of(blocking_dag(gate))) as engine:
        with anyio.fail_after(DEADLINE):
            run_id = await engine.trigger("gated")
            await gate["started"].wait()
        with pytest.raises(RunError) as refused:
            await engine.clear(run_id, ["first"])  # `wait`, downstream of it, is running
        with pytest.raises(RunError, match=r"wait is running"):
            await engine.clear(run_id, ["wait"])
        rows = await instances(engine.store, run_id)
        gate["release"].set()
        with anyio.fail_after(DEADLINE):
            record = await engine.wait(run_id)
    assert str(refused.value) == (
        f"cannot clear in run {run_id!r}: wait is running. "
        "Cancel the run or wait until those tasks finish, then clear again"
    )
    assert (rows["first"].state, rows["first"].try_number) == ("success", 1)
    assert record.state is RunState.SUCCESS


async def test_unknown_run_and_task_ids_are_named(make_settings: SettingsFactory) -> None:
    dag, _ = counting_chain()
    async with Engine.open(make_settings(), dagbag=bag_of(dag)) as engine:
        run_id = await finish(engine, "etl")
        with pytest.raises(RunNotFoundError, match="there is no run with id 'nope'"):
            await engine.clear("nope", ["load"])
        with pytest.raises(RunNotFoundError):
            await engine.cancel("nope")
        with pytest.raises(RunError) as unknown:
            await engine.clear(run_id, ["load", "transfrom"])
        with pytest.raises(RunError, match="name at least one task"):
            await engine.clear(run_id, [])
        rows = await instances(engine.store, run_id)
        record = await engine.store.get_run(run_id)
    assert str(unknown.value) == (
        f"DAG 'etl' (run {run_id!r}) has no task 'transfrom'; its tasks: extract, load, transform"
    )
    assert record is not None and record.state is RunState.SUCCESS  # nothing was changed
    assert tries_of(rows) == {"extract": 1, "transform": 1, "load": 1}


# -- cancel, then clear -------------------------------------------------------------------------


async def test_a_cancelled_run_cleared_runs_its_cancelled_tasks(
    make_settings: SettingsFactory,
) -> None:
    gate = new_gate()
    async with Engine.open(make_settings(), dagbag=bag_of(blocking_dag(gate))) as engine:
        with anyio.fail_after(DEADLINE):
            run_id = await engine.trigger("gated")
            await gate["started"].wait()
            assert await engine.cancel(run_id) is True
            cancelled = await engine.wait(run_id)
        assert await engine.cancel(run_id) is False  # finished: nothing to do
        gate["block"] = False
        cleared = await engine.clear(run_id, ["wait"])
        with anyio.fail_after(DEADLINE):
            record = await engine.wait(run_id)
        rows = await instances(engine.store, run_id)
        tries = await engine.store.list_tries(run_id, "wait")
    assert cancelled.state is RunState.CANCELLED
    assert cleared == [(run_id, "wait", -1)]
    assert record.state is RunState.SUCCESS
    assert [(t.try_number, t.state) for t in tries] == [(1, "cancelled"), (2, "success")]
    assert tries_of(rows) == {"first": 1, "wait": 2}


async def test_a_run_cancelled_while_queued_runs_whole_when_cleared(
    make_settings: SettingsFactory,
) -> None:
    gate = new_gate()
    dag = blocking_dag(gate)
    dag.max_active_runs = 1
    async with Engine.open(make_settings(), dagbag=bag_of(dag)) as engine:
        with anyio.fail_after(DEADLINE):
            running = await engine.trigger("gated")
            await gate["started"].wait()
            queued = await engine.trigger("gated")
            await engine.cancel(queued)
            cancelled = await engine.wait(queued)
        cleared = await engine.clear(queued, ["first"])
        gate["block"] = False
        gate["release"].set()
        with anyio.fail_after(DEADLINE):
            first = await engine.wait(running)
            record = await engine.wait(queued)
        rows = await instances(engine.store, queued)
    assert (cancelled.state, cancelled.started_at) == (RunState.CANCELLED, None)
    assert cleared == [(queued, "first", -1), (queued, "wait", -1)]  # it never got instances
    assert (first.state, record.state) == (RunState.SUCCESS, RunState.SUCCESS)
    assert tries_of(rows) == {"first": 1, "wait": 1}


# -- without a daemon: the store alone, then recovery --------------------------------------------


async def leave_running(settings: Settings, dag: DAG, gate: dict[str, Any]) -> str:
    """A run whose `wait` task is running when its engine goes away (as if killed)."""
    async with Engine.open(settings, dagbag=bag_of(dag)) as engine:
        with anyio.fail_after(DEADLINE):
            run_id = await engine.trigger(dag.dag_id)
            await gate["started"].wait()
    return run_id


async def test_cancel_and_clear_in_the_store_then_an_engine_finishes_the_run(
    make_settings: SettingsFactory,
) -> None:
    gate = new_gate()
    dag = blocking_dag(gate)
    settings = make_settings()
    run_id = await leave_running(settings, dag, gate)
    async with open_store(settings.state_dir) as store:
        stuck = await instances(store, run_id)
        changes = await cancel_stored_run(store, await stored_run(store, run_id), now=100.0)
        cancelled = await instances(store, run_id)
        tries = await store.list_tries(run_id, "wait")
        cleared, _ = await clear_stored_run(
            store, bag_of(dag), await stored_run(store, run_id), ["wait"], downstream=True, now=200
        )
        queued = await stored_run(store, run_id)
    gate["block"] = False
    async with Engine.open(settings, dagbag=bag_of(dag), recover=True) as engine:
        with anyio.fail_after(DEADLINE):
            record = await engine.wait(run_id)
        rows = await instances(engine.store, run_id)
    assert stuck["wait"].state is TaskState.RUNNING
    assert (cancelled["wait"].state, cancelled["wait"].error) == ("cancelled", "cancelled")
    assert cancelled["first"].state is TaskState.SUCCESS
    assert [(t.state, t.ended_at) for t in tries] == [(TaskState.CANCELLED, 100.0)]
    assert [type(c).__name__ for c in changes] == ["TaskChanged", "RunChanged"]
    assert cleared == [(run_id, "wait", -1)]
    assert (queued.state, queued.ended_at) == (RunState.QUEUED, None)
    assert record.state is RunState.SUCCESS
    assert tries_of(rows) == {"first": 1, "wait": 2}


async def test_a_run_cleared_in_the_store_runs_only_its_cleared_tasks_on_recovery(
    make_settings: SettingsFactory,
) -> None:
    dag, calls = counting_chain()
    settings = make_settings()
    async with Engine.open(settings, dagbag=bag_of(dag)) as engine:
        run_id = await finish(engine, "etl")
    async with open_store(settings.state_dir) as store:
        record = await stored_run(store, run_id)
        await clear_stored_run(store, bag_of(dag), record, ["load"], downstream=True, now=1.0)
        partly = await instances(store, run_id)
    async with Engine.open(settings, dagbag=bag_of(dag), recover=True) as engine:
        with anyio.fail_after(DEADLINE):
            finished = await engine.wait(run_id)
        rows = await instances(engine.store, run_id)
    assert {name: ti.state for name, ti in partly.items()} == {
        "extract": "success",
        "transform": "success",
        "load": "none",
    }
    assert finished.state is RunState.SUCCESS
    assert calls == {"extract": 1, "transform": 1, "load": 2}
    assert tries_of(rows) == {"extract": 1, "transform": 1, "load": 2}


async def test_an_engine_cancels_a_run_it_does_not_drive_in_the_store(
    make_settings: SettingsFactory,
) -> None:
    gate = new_gate()
    dag = blocking_dag(gate)
    settings = make_settings()
    run_id = await leave_running(settings, dag, gate)
    async with Engine.open(settings, dagbag=bag_of(dag), recover=False) as engine:
        with pytest.raises(RunError, match="wait is running"):
            await engine.clear(run_id, ["wait"])
        assert await engine.cancel(run_id) is True
        record = await engine.store.get_run(run_id)
        rows = await instances(engine.store, run_id)
    assert record is not None and record.state is RunState.CANCELLED
    assert {name: ti.state for name, ti in rows.items()} == {
        "first": "success",
        "wait": "cancelled",
    }


async def test_clearing_a_run_of_a_dag_that_is_not_loaded_says_so(
    make_settings: SettingsFactory,
) -> None:
    dag, _ = counting_chain()
    settings = make_settings()
    async with Engine.open(settings, dagbag=bag_of(dag)) as engine:
        run_id = await finish(engine, "etl")
    async with Engine.open(settings, dagbag=bag_of()) as engine:
        with pytest.raises(RunError, match="which is not loaded from"):
            await engine.clear(run_id, ["load"])
