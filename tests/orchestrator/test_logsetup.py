"""The daemon's log formats, parsed back from what a real logger wrote."""

from __future__ import annotations

import io
import json
import logging
import re
import sys
import time
from collections.abc import Iterator
from datetime import datetime

import pytest

from orchestrator.daemon.log_setup import configure_logging
from orchestrator.errors import ConfigError
from orchestrator.execution import log_capture

TEXT_LINE = re.compile(
    r"^(?P<ts>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}) (?P<level>[A-Z]+) +(?P<logger>[\w.]+): "
    r"(?P<msg>.*)$"
)


@pytest.fixture(autouse=True)
def restore_root_logger() -> Iterator[None]:
    """configure_logging changes the root logger; give the next test the one it had."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    for handler in root.handlers[:]:
        if handler not in handlers:
            root.removeHandler(handler)
            handler.close()
    root.setLevel(level)


def log_to(format: str, *, level: str = "INFO") -> io.StringIO:
    stream = io.StringIO()
    configure_logging(format, level=level, stream=stream)
    return stream


def json_lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


class Unserialisable:
    def __repr__(self) -> str:
        return "<Unserialisable thing>"


async def test_text_lines_read_like_the_example() -> None:
    stream = log_to("text")
    before = time.time()
    logging.getLogger("orchestrator.engine").info("run %s started", "r1")
    logging.getLogger("orchestrator.engine").warning("slow")
    first, second = stream.getvalue().splitlines()
    match = TEXT_LINE.match(first)
    assert match is not None, first
    assert match["level"] == "INFO" and match["logger"] == "orchestrator.engine"
    assert match["msg"] == "run r1 started"
    assert " INFO  orchestrator.engine: " in first  # levels are padded, so messages line up
    written = datetime.strptime(match["ts"], "%Y-%m-%d %H:%M:%S.%f").timestamp()  # local time
    assert abs(written - before) < 60
    assert " WARNING orchestrator.engine: slow" in second


async def test_json_lines_parse_back() -> None:
    stream = log_to("json")
    before = time.time()
    logging.getLogger("orchestrator.scheduler").info("run %s started", "r1")
    [entry] = json_lines(stream)
    assert list(entry) == ["ts", "level", "logger", "msg"]
    assert (entry["level"], entry["logger"], entry["msg"]) == (
        "INFO",
        "orchestrator.scheduler",
        "run r1 started",
    )
    ts = str(entry["ts"])
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", ts), ts
    assert abs(datetime.fromisoformat(ts).timestamp() - before) < 60


async def test_extra_fields_are_kept_in_both_formats() -> None:
    extra = {"run_id": "r1", "tries": 2, "tags": ["a", "b"], "note": "two words"}
    stream = log_to("json")
    logging.getLogger("orchestrator.engine").info("run started", extra=extra)
    [entry] = json_lines(stream)
    assert {key: entry[key] for key in extra} == extra

    stream = log_to("text")
    logging.getLogger("orchestrator.engine").info("run started", extra=extra)
    line = stream.getvalue().rstrip("\n")
    assert line.endswith('run started  run_id=r1 tries=2 tags=["a", "b"] note="two words"')


async def test_record_args_are_not_logged_as_fields() -> None:
    stream = log_to("json")
    logging.getLogger("orchestrator.engine").info("connected to %s", "host", extra={"n": 1})
    [entry] = json_lines(stream)
    assert entry["msg"] == "connected to host"
    assert "args" not in entry and entry["n"] == 1


async def test_an_extra_that_is_not_json_is_written_as_its_repr() -> None:
    circular: list[object] = []
    circular.append(circular)
    extra = {"thing": Unserialisable(), "nan": float("nan"), "loop": circular, "ok": {"k": 1}}
    stream = log_to("json")
    logging.getLogger("orchestrator.engine").info("odd fields", extra=extra)
    [entry] = json_lines(stream)
    assert entry["thing"] == "<Unserialisable thing>"
    assert entry["nan"] == "nan"
    assert entry["loop"] == "[[...]]"
    assert entry["ok"] == {"k": 1}

    stream = log_to("text")
    logging.getLogger("orchestrator.engine").info("odd fields", extra={"thing": Unserialisable()})
    assert stream.getvalue().rstrip("\n").endswith('thing="<Unserialisable thing>"')


async def test_an_extra_cannot_hide_a_standard_field() -> None:
    stream = log_to("json")
    logging.getLogger("orchestrator.engine").info("real", extra={"level": "fake", "ts": 0})
    [entry] = json_lines(stream)
    assert entry["level"] == "INFO" and entry["ts"] != 0


async def test_exceptions_carry_their_traceback() -> None:
    stream = log_to("json")
    try:
        raise ValueError("broken input")
    except ValueError:
        logging.getLogger("orchestrator.engine").exception("task failed")
    [entry] = json_lines(stream)
    assert entry["msg"] == "task failed"
    exc = str(entry["exc"])
    assert exc.startswith("Traceback (most recent call last):")
    assert exc.endswith("ValueError: broken input")

    stream = log_to("text")
    try:
        raise ValueError("broken input")
    except ValueError:
        logging.getLogger("orchestrator.engine").exception("task failed", extra={"run_id": "r1"})
    lines = stream.getvalue().splitlines()
    assert lines[0].endswith("task failed  run_id=r1")  # fields stay on the first line
    assert lines[1] == "Traceback (most recent call last):"
    assert lines[-1] == "ValueError: broken input"


async def test_stack_info_is_kept() -> None:
    stream = log_to("json")
    logging.getLogger("orchestrator.engine").info("where am I", stack_info=True)
    [entry] = json_lines(stream)
    assert "test_stack_info_is_kept" in str(entry["stack"])


async def test_calling_twice_replaces_only_its_own_handler() -> None:
    other = logging.NullHandler()
    logging.getLogger().addHandler(other)
    first = io.StringIO()
    configure_logging("text", stream=first)
    second = log_to("json")
    logging.getLogger("orchestrator.engine").info("once")
    assert first.getvalue() == ""
    assert [entry["msg"] for entry in json_lines(second)] == ["once"]
    assert other in logging.getLogger().handlers  # removed by restore_root_logger


async def test_the_level_filters_records() -> None:
    stream = log_to("json", level="warning")
    logging.getLogger("orchestrator.engine").info("hidden")
    logging.getLogger("orchestrator.engine").warning("shown")
    assert [entry["msg"] for entry in json_lines(stream)] == ["shown"]
    assert logging.getLogger().level == logging.WARNING


async def test_bad_format_or_level_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match="log format must be one of text, json, got 'xml'"):
        configure_logging("xml")
    with pytest.raises(ConfigError, match=r"log level must be one of .*DEBUG.*got 'LOUD'"):
        configure_logging("text", level="LOUD")


async def test_the_default_stream_is_the_real_stderr_behind_the_task_log_router(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real_stderr = io.StringIO()
    monkeypatch.setattr(sys, "stdout", io.StringIO())
    monkeypatch.setattr(sys, "stderr", real_stderr)
    log_capture.install()  # what the engine does: sys.stderr now routes to task logs
    assert sys.stderr is not real_stderr
    handler = configure_logging("text")
    assert isinstance(handler, logging.StreamHandler) and handler.stream is real_stderr
    logging.getLogger("orchestrator.engine").warning("to the terminal")
    assert real_stderr.getvalue().rstrip("\n").endswith("orchestrator.engine: to the terminal")
