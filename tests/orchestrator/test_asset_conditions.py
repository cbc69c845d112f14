"""`run_on` on several assets: a list or `any_of` runs on each update, `all_of` waits for all.

Real engine and store; the runs that update the assets are triggered by hand, and the test
waits on the store with a deadline.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from startkit import events_of, runs_of, settle, starting_engine, until_pending, until_runs

from orchestrator import DAG, Asset, TaskContext, all_of, any_of, task
from orchestrator.authoring.assets import AllOf, AnyOf
from orchestrator.config import Settings
from orchestrator.errors import DagError
from orchestrator.state import RunState

SettingsFactory = Callable[..., Settings]
SALES = Asset("lake/sales")
STOCK = Asset("lake/stock")
PRICES = Asset("lake/prices")


def producer(dag_id: str, asset: Asset) -> DAG:
    with DAG(dag_id) as dag:

        @task(outlets=[asset])
        def build() -> str:
            return "built"

        build()
    return dag


def consumer(dag_id: str, run_on: Any) -> DAG:
    with DAG(dag_id, run_on=run_on) as dag:

        @task
        def use(context: TaskContext) -> list[str]:
            return [event["asset"] for event in context.conf["events"]]

        use()
    return dag


def producers() -> list[DAG]:
    return [producer("sales", SALES), producer("stock", STOCK), producer("prices", PRICES)]


async def update(engine: Any, *dag_ids: str) -> None:
    for dag_id in dag_ids:
        run = await engine.wait(await engine.trigger(dag_id))
        assert run.state is RunState.SUCCESS


def test_the_operators_build_the_conditions() -> None:
    assert SALES & STOCK == all_of(SALES, STOCK)
    assert SALES | STOCK == any_of(SALES, STOCK)
    nested = SALES | (STOCK & "lake/prices")
    assert isinstance(nested, AnyOf) and isinstance(nested.parts[1], AllOf)
    assert nested.assets() == (SALES, STOCK, PRICES)
    assert nested.satisfied({"lake/sales"})
    assert not nested.satisfied({"lake/stock"})
    assert nested.satisfied({"lake/stock", "lake/prices"})
    with pytest.raises(TypeError, match=r"all_of\(\) takes Assets"):
        all_of(SALES, 3)


async def test_all_of_waits_for_every_asset_and_a_list_runs_on_each(
    make_settings: SettingsFactory,
) -> None:
    dags = [
        *producers(),
        consumer("both", all_of(SALES, STOCK)),
        consumer("both_by_operator", SALES & STOCK),
        consumer("either", [SALES, STOCK]),
    ]
    async with starting_engine(make_settings(), *dags) as engine:
        await update(engine, "sales", "sales")
        await until_pending(engine, "both", 2)
        await settle(engine)
        assert await runs_of(engine, "both") == []
        await update(engine, "stock")
        [both] = await until_runs(engine, "both", 1)
        [by_operator] = await until_runs(engine, "both_by_operator", 1)
        either = await until_runs(engine, "either", 3)
        await update(engine, "stock")  # a new round: waits for sales again
        await until_pending(engine, "both", 1)
        await settle(engine)
        assert len(await runs_of(engine, "both")) == 1
    assert both.state is RunState.SUCCESS
    assert [event["asset"] for event in both.conf["events"]] == [
        "lake/sales",
        "lake/sales",
        "lake/stock",
    ]
    assert by_operator.conf["events"] == both.conf["events"]
    assert [run.conf["asset"] for run in either] == ["lake/sales", "lake/sales", "lake/stock"]


async def test_nested_conditions_and_waiting_updates_survive_a_restart(
    make_settings: SettingsFactory,
) -> None:
    dags = [*producers(), consumer("nested", SALES | (STOCK & PRICES))]
    settings = make_settings()
    async with starting_engine(settings, *dags) as engine:
        await update(engine, "sales")
        [first] = await until_runs(engine, "nested", 1)
        await update(engine, "stock")
        await until_pending(engine, "nested", 1)
    async with starting_engine(settings, *dags) as engine:
        await settle(engine)
        assert len(await runs_of(engine, "nested")) == 1
        await update(engine, "prices")
        second = (await until_runs(engine, "nested", 2))[1]
        events = await events_of(engine, "nested")
    assert first.conf["events"][0]["asset"] == "lake/sales"
    assert [event["asset"] for event in second.conf["events"]] == ["lake/stock", "lake/prices"]
    assert all(event.run_id is not None for event in events)


def test_all_of_cannot_be_gathered_by_a_window_too() -> None:
    with pytest.raises(DagError, match="all_of already gathers"):
        DAG("windowed", run_on=all_of(SALES, STOCK), batch_window=60)
