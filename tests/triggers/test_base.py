"""The trigger contract: serialize is derived, the registry admits only Trigger subclasses."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from orchestrator.errors import TriggerLoadError
from triggers.base import Trigger, TriggerEvent, current_runtime, load_trigger
from triggers.time import TimeTrigger


@dataclass(frozen=True, kw_only=True)
class Sample(Trigger):
    """A trigger with every kind of field JSON can hold."""

    name: str
    sizes: tuple[int, ...] = ()
    labels: dict[str, str] | None = None
    limit: float | None = None

    async def run(self) -> AsyncIterator[TriggerEvent]:
        yield TriggerEvent({"name": self.name}, dedup_key=self.name)


class NotFrozen(Trigger):
    async def run(self) -> AsyncIterator[TriggerEvent]:
        yield TriggerEvent()


class NotATrigger:
    def __init__(self, **kwargs: object) -> None:
        self.kwargs = kwargs


def test_serialize_round_trips_through_the_registry() -> None:
    trigger = Sample(name="x", sizes=(1, 2), labels={"a": "b"}, limit=1.5)
    classpath, kwargs = trigger.serialize()
    assert classpath == f"{__name__}.Sample"
    assert kwargs == {"name": "x", "sizes": [1, 2], "labels": {"a": "b"}, "limit": 1.5}
    assert load_trigger(classpath, kwargs) == trigger  # tuples come back as tuples


class Undecorated(Sample):
    """Inherits Sample's fields but adds its own state, which serialize would not store."""


def test_serialize_checks_each_class_once_and_refuses_an_undecorated_subclass_every_time() -> None:
    # The check and the field names are kept per class: a refusal must not be kept as a pass.
    for _ in range(2):
        with pytest.raises(TriggerLoadError, match="must be decorated with @dataclass"):
            Undecorated(name="x").serialize()
    assert Sample(name="y").serialize()[1]["name"] == "y"
    assert Sample(name="z", sizes=(3,)).serialize()[1]["sizes"] == [3]


def test_describe_names_the_class_and_fields() -> None:
    assert Sample(name="x").describe() == "Sample(name='x', sizes=(), labels=None, limit=None)"


@pytest.mark.parametrize(
    ("classpath", "kwargs", "message"),
    [
        ("nowhere.Missing", {}, "there is no trigger class 'nowhere.Missing'"),
        (f"{__name__}.NotATrigger", {}, "is not a Trigger subclass; refusing to run it"),
        ("os.system", {}, "is not a Trigger subclass"),
        (f"{__name__}.NotFrozen", {}, "must be decorated with @dataclass(frozen=True"),
        (f"{__name__}.Sample", {"nmae": "x"}, "unexpected keyword argument 'nmae'"),
        (f"{__name__}.Sample", {}, "missing 1 required keyword-only argument: 'name'"),
        (f"{__name__}.Sample", [], "must be a JSON object"),
        ("triggers.time.TimeTrigger", {"moment": "soon"}, "cannot build triggers.time"),
    ],
)
def test_the_registry_refuses_what_it_cannot_build(
    classpath: str, kwargs: object, message: str
) -> None:
    with pytest.raises(TriggerLoadError) as caught:
        load_trigger(classpath, kwargs)  # type: ignore[arg-type]
    assert message in str(caught.value)


@pytest.mark.parametrize("value", [float("nan"), object(), {1: "int key"}, float("inf")])
def test_fields_that_are_not_json_safe_are_refused_when_serialized(value: object) -> None:
    with pytest.raises(TriggerLoadError, match="must be JSON-safe"):
        Sample(name="x", labels=value).serialize()  # type: ignore[arg-type]


def test_an_event_payload_must_be_json_safe() -> None:
    with pytest.raises(TriggerLoadError, match="a trigger event's payload must be JSON-safe"):
        TriggerEvent({"when": object()})


async def test_the_base_class_cannot_check_once_or_run() -> None:
    with pytest.raises(NotImplementedError, match="cannot check once"):
        await Sample(name="x").poll()
    with pytest.raises(NotImplementedError, match="must implement run"):
        await Trigger().run().__anext__()


def test_outside_a_triggerer_the_runtime_has_the_system_clock_and_a_closed_policy() -> None:
    runtime = current_runtime()
    assert runtime.state is None and runtime.save_cursor is None
    assert runtime.policy.allowed_roots == ()
    assert TimeTrigger(moment=0).serialize()[0] == "triggers.time.TimeTrigger"
