"""The writer's quick ways to make rows give what the plain ways give, and refuse the same."""

from __future__ import annotations

import dataclasses
import json
import math
import sqlite3
import threading
from typing import Any

import pytest

from orchestrator.state import TaskState
from orchestrator.store import TaskInstanceRecord, connection  # noqa: F401 (the None adapter)
from orchestrator.store.records import TASK_STATE_FIELDS
from orchestrator.store.rows import (
    TASK_INSTANCE_COLUMNS,
    encode_json,
    moved_task_instance_params,
    task_instance_params,
)

# What `encode_json` must match: the encoder it replaced, made the same way.
_PLAIN = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))


@pytest.mark.parametrize(
    "value",
    [
        {},
        {"directory": "/tmp/d", "pattern": "part_*.csv", "recursive": False, "polling": None},
        {"moment": 1_796_534_269.1143813, "nested": {"list": [1, 2.5, True, None, 'é"\n\t']}},
        {1: "int key", 2.5: "float key", False: "bool key", None: "null key"},
        ["a", ["b", {"c": []}]],
        "text with \u2028 and \x00",
        -3,
        1e300,
        None,
    ],
)
def test_encode_json_gives_the_plain_encoders_text(value: Any) -> None:
    assert encode_json(value, what="a value") == _PLAIN.encode(value)


def _circular() -> list[Any]:
    value: list[Any] = []
    value.append(value)
    return value


@pytest.mark.parametrize(
    "value",
    [{"bad": {1, 2}}, {"nan": math.nan}, {"inf": [math.inf]}, {(1, 2): "tuple key"}, _circular()],
)
def test_encode_json_refuses_what_the_plain_encoder_refuses_with_its_message(value: Any) -> None:
    with pytest.raises((TypeError, ValueError)) as plain:
        _PLAIN.encode(value)
    with pytest.raises(ValueError) as ours:
        encode_json(value, what="the arguments of trigger T")
    assert str(ours.value) == f"the arguments of trigger T is not JSON: {plain.value}"
    assert ours.value.__cause__ is not None


def test_a_refused_value_leaves_nothing_that_refuses_the_next() -> None:
    # Refused deep inside, the C encoder leaves the containers it was in as "being encoded";
    # encoding the same containers again must not find them circular.
    inner: dict[str, Any] = {"set": {1}}
    outer = {"a": [inner]}
    with pytest.raises(ValueError, match="set is not JSON serializable"):
        encode_json(outer, what="v")
    inner["set"] = [1]
    assert encode_json(outer, what="v") == '{"a":[{"set":[1]}]}'


def test_encode_json_works_in_each_thread_with_its_own_encoder() -> None:
    texts: list[str] = []
    worker = threading.Thread(target=lambda: texts.append(encode_json({"x": [1]}, what="v")))
    worker.start()
    worker.join()
    assert texts == ['{"x":[1]}']
    assert encode_json({"x": [2]}, what="v") == '{"x":[2]}'


def test_none_still_binds_null_through_the_registered_adapter() -> None:
    adapter = sqlite3.adapters[(type(None), sqlite3.PrepareProtocol)]
    assert adapter(None) is None
    db = sqlite3.connect(":memory:")
    db.execute("CREATE TABLE t (a, b NOT NULL DEFAULT 'x')")
    db.executemany("INSERT INTO t (a) VALUES (?)", [(None,), (1,)])
    assert db.execute("SELECT typeof(a) FROM t").fetchall() == [("null",), ("integer",)]
    with pytest.raises(sqlite3.IntegrityError, match="NOT NULL"):
        db.execute("INSERT INTO t (a, b) VALUES (?, ?)", (1, None))


_TASK_INSTANCE = TaskInstanceRecord(
    run_id="r1",
    task_id="wait",
    map_index=3,
    state=TaskState.SCHEDULED,
    try_number=2,
    max_tries=4,
    pool="sensors",
    priority=7,
    queued_at=1.0,
    started_at=2.0,
    ended_at=3.0,
    next_retry_at=4.0,
    error="earlier",
    next_call='{"target": "go"}',
    interrupted_tries=1,
)


def test_the_row_params_are_the_columns_in_order() -> None:
    names = TASK_INSTANCE_COLUMNS.split(", ")
    expected = {**dataclasses.asdict(_TASK_INSTANCE), "state": "scheduled"}
    assert task_instance_params(_TASK_INSTANCE) == tuple(expected[name] for name in names)


@pytest.mark.parametrize(
    "columns",
    [
        {"state": "deferred"},
        {"state": "deferred", "started_at": 9.0, "try_number": 3, "error": None, "next_call": "{}"},
        {"state": "failed", **dict.fromkeys(sorted(TASK_STATE_FIELDS))},
    ],
)
def test_a_moved_row_is_the_record_moved(columns: dict[str, Any]) -> None:
    fields = {name: value for name, value in columns.items() if name != "state"}
    moved = dataclasses.replace(_TASK_INSTANCE, state=TaskState(columns["state"]), **fields)
    assert moved_task_instance_params(_TASK_INSTANCE, columns) == task_instance_params(moved)
