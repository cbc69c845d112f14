"""Results as size-checked JSON, and how a task's return value or exception becomes an outcome."""

from __future__ import annotations

import io
import math
from pathlib import Path

import pytest
from taskjobs import DagFile

from orchestrator.authoring.tasks import Skip
from orchestrator.errors import MAX_ERROR_CHARS, ResultError, error_line
from orchestrator.execution.jobs import Outcome
from orchestrator.execution.results import (
    decode_result,
    encode_result,
    outcome_of_call,
    outcome_of_error,
    outcome_of_value,
)


def test_encode_result_is_compact_json_that_decodes_back() -> None:
    value = {"rows": [1, 2.5, None, True], "name": "crème brûlée"}
    text = encode_result(value, task_id="t", limit=1000)
    assert text == '{"rows":[1,2.5,null,true],"name":"crème brûlée"}'
    assert decode_result(text) == value


def test_encode_result_counts_utf8_bytes_against_the_limit() -> None:
    text = encode_result("é" * 10, task_id="t", limit=22)  # 20 bytes plus two quotes
    assert decode_result(text) == "é" * 10
    with pytest.raises(ResultError, match="23 bytes of JSON, over the limit of 22"):
        encode_result("é" * 10 + "x", task_id="t", limit=22)


def test_oversized_result_names_the_setting_and_says_what_to_do() -> None:
    with pytest.raises(ResultError) as caught:
        encode_result(list(range(100)), task_id="train", limit=50)
    message = str(caught.value)
    assert "task 'train'" in message
    assert "result_max_bytes" in message
    assert "path or URI" in message


class _Model:
    pass


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (_Model(), "TypeError: Object of type _Model is not JSON serializable"),
        ({1, 2}, "TypeError: Object of type set"),
        (math.nan, "ValueError: Out of range float values"),
        ({("a", "b"): 1}, "TypeError: keys must be"),
    ],
)
def test_result_that_is_not_json_names_the_type_and_says_what_to_return(
    value: object, reason: str
) -> None:
    with pytest.raises(ResultError) as caught:
        encode_result(value, task_id="fit", limit=1000)
    message = str(caught.value)
    assert message.startswith("result of task 'fit' is not JSON-serialisable (")
    assert reason in message
    assert "return plain lists/dicts/str/numbers" in message


def test_circular_result_is_reported_not_crashed_on() -> None:
    value: list[object] = []
    value.append(value)
    with pytest.raises(ResultError, match="Circular reference"):
        encode_result(value, task_id="t", limit=1000)


def test_decode_result_rejects_text_that_is_not_json() -> None:
    with pytest.raises(ResultError, match="not valid JSON"):
        decode_result("{oops")


def test_error_line_keeps_type_and_message_on_a_single_short_line() -> None:
    assert error_line(ValueError("bad\n  row   7")) == "ValueError: bad row 7"
    assert error_line(KeyError()) == "KeyError"
    long = error_line(RuntimeError("x" * 10_000))
    assert len(long) == MAX_ERROR_CHARS
    assert long.endswith("...")


def test_outcome_of_error_writes_the_traceback_and_returns_one_line() -> None:
    log = io.StringIO()
    try:
        raise ValueError("bad row 7")
    except ValueError as error:
        outcome = outcome_of_error(error, log)
    assert outcome.status is Outcome.FAILED
    assert outcome.error == "ValueError: bad row 7"
    assert "Traceback (most recent call last)" in log.getvalue()
    assert 'raise ValueError("bad row 7")' in log.getvalue()


def test_skip_is_a_decision_with_its_reason_and_no_traceback() -> None:
    log = io.StringIO()
    outcome = outcome_of_error(Skip("no new data"), log)
    assert outcome.status is Outcome.SKIPPED
    assert outcome.error == "no new data"
    assert "Traceback" not in log.getvalue()
    assert outcome_of_error(Skip(), io.StringIO()).error is None


def test_sys_exit_is_reported_with_its_code() -> None:
    outcome = outcome_of_error(SystemExit(3), io.StringIO())
    assert outcome.status is Outcome.FAILED
    assert outcome.error == "task called sys.exit(3)"


def test_outcome_of_value_fails_a_result_that_cannot_be_stored(tmp_path: Path) -> None:
    job = DagFile(tmp_path, "").job("any", result_max_bytes=10)
    log = io.StringIO()
    assert outcome_of_value([1, 2], job, log).result_json == "[1,2]"
    outcome = outcome_of_value("x" * 100, job, log)
    assert outcome.status is Outcome.FAILED
    assert outcome.error is not None and "result_max_bytes" in outcome.error
    assert outcome.error in log.getvalue()  # the user sees it in the try's log too


def test_outcome_of_call_reports_but_lets_keyboard_interrupt_through(tmp_path: Path) -> None:
    job = DagFile(tmp_path, "").job("any")

    def interrupted() -> None:
        raise KeyboardInterrupt

    assert outcome_of_call(lambda: 1 / 0, job, io.StringIO()).error == (
        "ZeroDivisionError: division by zero"
    )
    with pytest.raises(KeyboardInterrupt):
        outcome_of_call(interrupted, job, io.StringIO())
