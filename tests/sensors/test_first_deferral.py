"""A deferrable sensor's first deferral, made in the engine: references resolve wherever they are
in its fields; fields without any are passed as they are (`surely_plain`), never resolved twice
or stale; a trigger that cannot be stored fails its task.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import pytest
from sensorkit import SettingsFactory, engine_for, instance, until_state
from triggerkit import GateTrigger, open_gate, until_waiting

from orchestrator import DAG, TaskContext, dag, task
from orchestrator.authoring.references import ParamRef, resolve_refs, surely_plain
from orchestrator.state import RunState, TaskState
from sensors.base import BaseSensor, SensorArgs
from triggers.base import Trigger
from triggers.file import FileTrigger

CONTEXT = TaskContext(dag_id="d", run_id="r", task_id="t", params={"p": "param"})


@pytest.mark.parametrize(
    "value",
    [
        None,
        "text",
        3,
        {},
        {"kwargs": {}},
        {"kwargs": {"directory": "/in", "pattern": "*.csv", "n": 1.5, "flag": True, "no": None}},
        {"kwargs": ["a", 1], "other": ("b", None)},
        ["a", {"b": 1}],
        ("a", ["b"]),
    ],
)
def test_a_surely_plain_value_is_what_resolving_it_gives(value: Any) -> None:
    assert surely_plain(value)
    assert resolve_refs(value, {}, CONTEXT) == value


@pytest.mark.parametrize(
    "value",
    [
        ParamRef("p"),
        [ParamRef("p")],
        {"kwargs": ParamRef("p")},
        {"kwargs": {"gate": ParamRef("p")}},
        {"kwargs": {"gate": "x", "more": [ParamRef("p")]}},  # deeper: not looked at, resolved
        {"kwargs": {"deep": {"deeper": {"deepest": ParamRef("p")}}}},
        {"kwargs": OrderedDict(gate=ParamRef("p"))},  # a dict subclass: not looked into
        {"kwargs": {"when": object()}},  # no container, no plain leaf: resolved (kept as is)
    ],
)
def test_a_value_holding_a_ref_or_unsure_is_not_surely_plain(value: Any) -> None:
    assert not surely_plain(value)


class Recording(BaseSensor):
    """Waits on the gate named by its `gate` field; notes the arguments it was made with."""

    seen: dict[str, dict[str, Any]] = {}  # noqa: RUF012 - the test reads it

    def __init__(self, *, task_id: str, **fields: Any) -> None:
        super().__init__(task_id=task_id, fields=fields)

    def make_trigger(self, args: SensorArgs) -> Trigger:
        Recording.seen[self.task_id] = dict(args.values)
        return GateTrigger(name=str(args["gate"]))


async def test_references_resolve_at_any_depth_of_a_sensors_fields(
    make_settings: SettingsFactory,
) -> None:
    Recording.seen.clear()

    @dag(dag_id="refs")
    def pipeline(where: str = "default") -> None:
        @task
        def upstream() -> dict[str, Any]:
            return {"name": "from-upstream", "list": [1, 2]}

        made = upstream()
        Recording(task_id="plain", gate="plain-gate", n=3)
        Recording(task_id="top", gate=made["name"])
        Recording(task_id="nested", gate="nested-gate", deep={"a": [where, made["list"]]})
        Recording(task_id="param", gate=where)

    async with engine_for(make_settings(), pipeline()) as engine:
        run_id = await engine.trigger("refs", conf={"where": "from-conf"})
        await until_waiting("plain-gate", "from-upstream", "nested-gate", "from-conf")
        for gate in ("plain-gate", "from-upstream", "nested-gate", "from-conf"):
            open_gate(gate, gate)
        assert (await engine.wait(run_id)).state is RunState.SUCCESS
    assert Recording.seen == {
        "plain": {"gate": "plain-gate", "n": 3},
        "top": {"gate": "from-upstream"},
        "nested": {"gate": "nested-gate", "deep": {"a": ["from-conf", [1, 2]]}},
        "param": {"gate": "from-conf"},
    }


async def test_a_ref_set_in_the_fields_after_the_sensor_was_made_resolves(
    make_settings: SettingsFactory,
) -> None:
    Recording.seen.clear()
    with DAG("later", params={"p": "from-param"}) as pipeline:
        sensor = Recording(task_id="wait", gate="plain")
    sensor.fields["gate"] = ParamRef("p")  # nothing about the fields is kept from before

    async with engine_for(make_settings(), pipeline) as engine:
        run_id = await engine.trigger("later")
        await until_waiting("from-param")
        open_gate("from-param", 1)
        assert (await engine.wait(run_id)).state is RunState.SUCCESS
    assert Recording.seen["wait"] == {"gate": "from-param"}


@dataclass(frozen=True, kw_only=True)
class TaggedFile(FileTrigger):
    """A user's FileTrigger with a field of its own, which FileTrigger's checks do not cover."""

    tag: Any = None


class TaggedSensor(BaseSensor):
    def __init__(self, *, task_id: str, tag: Any) -> None:
        super().__init__(task_id=task_id)
        self.tag = tag

    def make_trigger(self, args: SensorArgs) -> Trigger:
        return TaggedFile(directory="/nowhere", tag=self.tag)


async def test_a_sensor_whose_trigger_is_not_json_safe_fails_its_task_alone(
    make_settings: SettingsFactory,
) -> None:
    with DAG("tagged") as pipeline:
        TaggedSensor(task_id="bad", tag=float("nan"))
        Recording(task_id="fine", gate="fine")

    async with engine_for(make_settings(), pipeline) as engine:
        run_id = await engine.trigger("tagged")
        await until_state(engine, run_id, "bad", TaskState.FAILED)
        await until_waiting("fine")
        open_gate("fine", 1)
        await engine.wait(run_id)
        bad = await instance(engine, run_id, "bad")
        fine = await instance(engine, run_id, "fine")
    assert bad is not None and fine is not None
    assert (bad.error or "").startswith("cannot start waiting: ")
    assert "the fields of TaggedFile must be JSON-safe" in (bad.error or "")
    assert fine.state is TaskState.SUCCESS


def test_plain_fields_are_trusted_and_a_ref_set_in_them_later_is_not() -> None:
    with DAG("trust"):
        sensor = Recording(task_id="wait", gate="g", n=1, none=None)
    assert sensor._untrusted({"p": 1}) == frozenset()
    sensor.fields["n"] = ParamRef("p")
    assert sensor._untrusted({"p": 1}) == {"n"}
    assert sensor._untrusted({}) == frozenset()  # a param at its default is as trusted
