"""The hot path's shortcuts answer as the long way did: JSON answers, query strings, a conf."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from starlette.requests import Request
from starlette.responses import JSONResponse

from orchestrator.api.answers import JsonAnswer
from orchestrator.api.inputs import refuse_token_in_query
from orchestrator.errors import ApiError, RunError
from orchestrator.scheduling.run_requests import _checked_conf

VALUES: list[Any] = [
    {"run_id": "r", "dag_id": "d", "delivery_id": None, "created": True},
    {"error": {"status": 400, "code": "bad", "message": "naïve “quotes” \u2028 and \\ /"}},
    {"nested": [1, 2.5, -0.0, 10**30, {"a": [True, False, None]}], "": {}},
    [],
    "text",
    3,
]


@pytest.mark.parametrize("value", VALUES)
def test_a_json_answer_is_the_same_bytes_and_headers_as_starlettes(value: Any) -> None:
    for status in (200, 201, 503):
        ours = JsonAnswer(value, status_code=status, headers={"retry-after": "2"})
        theirs = JSONResponse(value, status_code=status, headers={"retry-after": "2"})
        assert ours.body == theirs.body
        assert ours.raw_headers == theirs.raw_headers
        assert ours.status_code == theirs.status_code


@pytest.mark.parametrize("bad", [math.nan, math.inf, {"x": -math.inf}, {"x": object()}])
def test_a_json_answer_refuses_what_starlettes_refuses(bad: Any) -> None:
    with pytest.raises((ValueError, TypeError)) as theirs:
        JSONResponse(bad)
    with pytest.raises(type(theirs.value)) as ours:
        JsonAnswer(bad)
    assert str(ours.value) == str(theirs.value)


def _request(query: bytes | None) -> Request:
    scope: dict[str, Any] = {"type": "http", "method": "GET", "path": "/", "headers": []}
    if query is not None:
        scope["query_string"] = query
    return Request(scope)


@pytest.mark.parametrize("query", [b"", None, b"limit=5", b"state=running&limit=2", b"tok=en"])
def test_a_query_without_a_token_passes(query: bytes | None) -> None:
    request = _request(query)
    refuse_token_in_query(request)
    if not query:  # nothing to look at: the query string was not even parsed
        assert "_query_params" not in vars(request)


@pytest.mark.parametrize("query", [b"token=x", b"a=1&Access_Token=x", b"API_KEY", b"auth=&b=2"])
def test_a_token_in_the_query_is_refused(query: bytes) -> None:
    with pytest.raises(ApiError) as refused:
        refuse_token_in_query(_request(query))
    assert refused.value.code == "token_in_query"


CONFS: list[Any] = [
    None,
    {},
    {"sha": "abc", "n": 1, "f": 2.5, "nested": {"l": [1, None, True]}, "é": "ü"},
    {1: "a key that JSON makes a string"},
]


@pytest.mark.parametrize("conf", CONFS)
def test_a_checked_conf_is_its_json_round_trip(conf: Any) -> None:
    expected = {} if conf is None else json.loads(json.dumps(dict(conf), allow_nan=False))
    assert _checked_conf(conf) == expected


@pytest.mark.parametrize("conf", [{"x": math.nan}, {"x": math.inf}, {"x": object()}, ["a"]])
def test_a_conf_json_cannot_hold_is_refused(conf: Any) -> None:
    with pytest.raises(RunError):
        _checked_conf(conf)
