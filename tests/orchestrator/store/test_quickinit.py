"""`quick_init`: the same frozen records, made without a setattr call per field."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import pytest

from orchestrator.quickinit import quick_init
from orchestrator.state import TaskState
from orchestrator.store.records import TaskInstanceRecord


def test_a_quick_record_is_the_record_the_dataclass_would_make() -> None:
    made = TaskInstanceRecord(run_id="r", task_id="t", state=TaskState.QUEUED, max_tries=3)
    fields = dataclasses.asdict(made)
    assert fields["map_index"] == -1 and fields["try_number"] == 0  # the defaults
    assert made == dataclasses.replace(made) and hash(made) == hash(dataclasses.replace(made))
    assert repr(made).startswith("TaskInstanceRecord(run_id='r', task_id='t', map_index=-1")
    with pytest.raises(dataclasses.FrozenInstanceError):
        made.state = TaskState.FAILED  # type: ignore[misc]


def test_a_quick_init_checks_its_arguments_as_the_dataclass_does() -> None:
    with pytest.raises(TypeError, match="missing 1 required keyword-only argument: 'task_id'"):
        TaskInstanceRecord(run_id="r")  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="unexpected keyword argument 'colour'"):
        TaskInstanceRecord(run_id="r", task_id="t", colour="red")  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        TaskInstanceRecord("r", "t")  # type: ignore[call-arg]


def test_what_quick_init_cannot_make_the_same_way_is_refused() -> None:
    @dataclass(frozen=True, kw_only=True)
    class Checked:
        name: str

        def __post_init__(self) -> None: ...

    @dataclass(kw_only=True)
    class Mutable:
        name: str

    @dataclass(frozen=True)
    class Positional:
        name: str

    for cls in (Checked, Mutable, Positional):
        with pytest.raises(TypeError, match="quick_init"):
            quick_init(cls)


def test_a_field_with_a_factory_gets_a_new_value_unless_given_one() -> None:
    @dataclass(frozen=True, kw_only=True)
    class Slow:
        name: str
        names: list[str] = field(default_factory=list)
        size: int = 2

    @quick_init
    @dataclass(frozen=True, kw_only=True)
    class Quick:
        name: str
        names: list[str] = field(default_factory=list)
        size: int = 2

    first, second = Quick(name="a"), Quick(name="b")
    assert first.names == [] and first.names is not second.names  # one list each
    given = ["x"]
    assert Quick(name="c", names=given).names is given
    assert dataclasses.asdict(first) == dataclasses.asdict(Slow(name="a"))
    assert repr(first).endswith("Quick(name='a', names=[], size=2)")
    with pytest.raises(dataclasses.FrozenInstanceError):
        first.names = given  # type: ignore[misc]
