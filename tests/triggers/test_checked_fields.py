"""`fields_checked_as_json`: a trigger class whose constructor admits only JSON scalars skips the
JSON check when serialized; every other class, its subclasses included, keeps the full check.
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from typing import Any

import pytest

import triggers
from orchestrator.authoring.defer import Defer, deferral_of
from orchestrator.errors import TaskError, TriggerLoadError
from triggers.base import Trigger, check_json_safe
from triggers.file import FileTrigger
from triggers.time import TimeTrigger

#: Valid arguments of each class that says it checks its fields; a class saying so must be here.
VALID: dict[type[Trigger], dict[str, Any]] = {
    FileTrigger: {"directory": "/data/in"},
    TimeTrigger: {"moment": 1_800_000_000},
}
NOT_JSON: list[Any] = [
    float("nan"),
    float("inf"),
    -float("inf"),
    1e400,
    object(),
    b"bytes",
    (1, 2),
    [1],
    {"a": 1},
    {1: "x"},
    datetime(2026, 1, 1, tzinfo=UTC),
]


def checked_classes() -> set[type[Trigger]]:
    for module in pkgutil.iter_modules(triggers.__path__):
        importlib.import_module(f"triggers.{module.name}")
    found, pending = set(), [Trigger]
    while pending:
        cls = pending.pop()
        pending.extend(cls.__subclasses__())
        if cls.__dict__.get("fields_checked_as_json") is True:
            found.add(cls)
    return found


@dataclass(frozen=True, kw_only=True)
class PlainFile(FileTrigger):
    """FileTrigger's fields, without the class's word for them: the full check runs."""


@dataclass(frozen=True, kw_only=True)
class PlainTime(TimeTrigger):
    pass


@dataclass(frozen=True, kw_only=True)
class TaggedFile(FileTrigger):
    """A user's subclass adding a field its parent's checks know nothing of."""

    tag: Any = None


def test_each_class_saying_so_is_listed_here_and_the_base_class_does_not() -> None:
    assert checked_classes() == set(VALID)
    assert Trigger.fields_checked_as_json is False


@pytest.mark.parametrize("cls", list(VALID), ids=lambda cls: cls.__name__)
@pytest.mark.parametrize("value", NOT_JSON, ids=repr)
def test_a_class_saying_so_refuses_every_value_that_is_not_json_in_every_field(
    cls: type[Trigger], value: Any
) -> None:
    for field in fields(cls):
        try:
            trigger = cls(**{**VALID[cls], field.name: value})
        except (ValueError, TypeError):
            continue
        # Admitted (a number made a float, say): then what it stores passes the full check.
        check_json_safe(trigger.serialize()[1], what=f"{cls.__name__}.{field.name}")


@pytest.mark.parametrize(
    ("checked", "full"),
    [
        (FileTrigger(directory="/d"), PlainFile(directory="/d")),
        (
            FileTrigger(
                directory="rel", pattern="*.csv", recursive=True, stable_for=2, polling=True
            ),
            PlainFile(directory="rel", pattern="*.csv", recursive=True, stable_for=2, polling=True),
        ),
        (
            FileTrigger(directory="/d", poll_interval=0.25, trusted=False, ignore_partial=False),
            PlainFile(directory="/d", poll_interval=0.25, trusted=False, ignore_partial=False),
        ),
        (TimeTrigger(moment=5), PlainTime(moment=5)),
        (TimeTrigger(moment=1.5e9), PlainTime(moment=1.5e9)),
    ],
    ids=repr,
)
def test_skipping_the_check_stores_what_the_full_check_stores(
    checked: Trigger, full: Trigger
) -> None:
    classpath, kwargs = checked.serialize()
    assert classpath == f"{type(checked).__module__}.{type(checked).__qualname__}"
    assert kwargs == full.serialize()[1]
    assert [type(value) for value in kwargs.values()] == [
        type(value) for value in full.serialize()[1].values()
    ]
    check_json_safe(kwargs, what="the fields")


@pytest.mark.parametrize("tag", [object(), float("nan"), {1: "x"}])
def test_a_subclass_of_a_checked_class_is_checked_in_full(tag: Any) -> None:
    trigger = TaggedFile(directory="/d", tag=tag)
    with pytest.raises(TriggerLoadError, match="the fields of TaggedFile must be JSON-safe"):
        trigger.serialize()
    with pytest.raises(TaskError, match="the fields of TaggedFile must be JSON-safe"):
        deferral_of(Defer(trigger), None)  # so a sensor making it fails its task, as before


def test_a_subclass_of_a_checked_class_stores_its_own_fields() -> None:
    assert TaggedFile(directory="/d", tag=(1, [2])).serialize()[1]["tag"] == [1, [2]]
