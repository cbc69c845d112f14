"""Per-try log capture in the engine process: routed by context, never globally redirected."""

from __future__ import annotations

import io
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import anyio
import anyio.lowlevel
import anyio.to_thread
import pytest

from orchestrator.execution.capped_log import cap_log, log_over_cap
from orchestrator.execution.log_capture import capture, real_stream
from orchestrator.execution.log_files import append_to_log


@contextmanager
def engine_streams() -> Iterator[tuple[io.StringIO, io.StringIO]]:
    """Plain streams standing in for the engine's stdout and stderr.

    Swapped in inside the test body, not by a monkeypatch fixture: pytest puts its own
    capturing streams back when the body starts.
    """
    saved = sys.stdout, sys.stderr
    out, err = io.StringIO(), io.StringIO()
    sys.stdout, sys.stderr = out, err
    try:
        yield out, err
    finally:
        sys.stdout, sys.stderr = saved


async def test_print_stderr_and_logging_go_to_the_log_of_the_current_try(tmp_path: Path) -> None:
    log_path = tmp_path / "logs" / "a" / "1.log"  # the folders do not exist yet
    with engine_streams() as (out, err):
        with capture(str(log_path)):
            print("printed")
            sys.stderr.write("to stderr\n")
            logging.getLogger("my.task").warning("logged %d", 7)
        print("engine output")
    text = log_path.read_text()
    assert text.startswith("printed\nto stderr\n")
    assert " WARNING my.task: logged 7\n" in text
    assert "engine output" not in text
    assert out.getvalue() == "engine output\n"
    assert "printed" not in err.getvalue()


async def test_concurrent_tries_each_write_to_their_own_log(tmp_path: Path) -> None:
    async def write(name: str) -> None:
        with capture(str(tmp_path / f"{name}.log")):
            for number in range(3):
                print(f"{name} {number}")
                await anyio.lowlevel.checkpoint()  # let the other try write in between

    with engine_streams() as (out, _):
        async with anyio.create_task_group() as task_group:
            task_group.start_soon(write, "a")
            task_group.start_soon(write, "b")
    assert (tmp_path / "a.log").read_text() == "a 0\na 1\na 2\n"
    assert (tmp_path / "b.log").read_text() == "b 0\nb 1\nb 2\n"
    assert out.getvalue() == ""


async def test_a_worker_thread_inherits_the_capture(tmp_path: Path) -> None:
    with engine_streams() as (out, _), capture(str(tmp_path / "t.log")):
        await anyio.to_thread.run_sync(print, "from a thread")
    assert (tmp_path / "t.log").read_text() == "from a thread\n"
    assert out.getvalue() == ""


async def test_a_log_record_reaches_the_log_once_even_with_a_handler_on_stderr(
    tmp_path: Path,
) -> None:
    with engine_streams():
        with capture(str(tmp_path / "warm.log")):
            pass  # installs the router, so the handler below writes to the routed stderr
        handler = logging.StreamHandler(sys.stderr)
        logging.root.addHandler(handler)
        try:
            with capture(str(tmp_path / "once.log")):
                logging.getLogger("my.task").warning("only once")
        finally:
            logging.root.removeHandler(handler)
    assert (tmp_path / "once.log").read_text().count("only once") == 1


async def test_records_outside_a_try_are_left_to_the_engines_handlers(tmp_path: Path) -> None:
    with engine_streams():
        with capture(str(tmp_path / "t.log")):
            pass
        logging.getLogger("engine").warning("not a task's")
    assert (tmp_path / "t.log").read_text() == ""


async def test_capture_appends_and_yields_the_log(tmp_path: Path) -> None:
    log_path = tmp_path / "t.log"
    with engine_streams():
        with capture(str(log_path)) as log:
            log.write("first\n")
        with capture(str(log_path)):
            print("second")
    append_to_log(str(log_path), "timed out after 1 s")
    assert log_path.read_text() == "first\nsecond\ntimed out after 1 s\n"


async def test_without_a_log_path_output_stays_on_the_engines_streams() -> None:
    with engine_streams() as (out, err):
        with capture("") as log:
            print("visible")
            log.write("traceback\n")
        append_to_log("", "nowhere to go")  # no log: nothing to do, and no error
    assert out.getvalue() == "visible\n"
    assert err.getvalue() == "traceback\n"


async def test_real_stream_is_what_the_router_writes_through_to(tmp_path: Path) -> None:
    with engine_streams() as (out, err), capture(str(tmp_path / "t.log")):
        assert sys.stdout is not out
        assert real_stream("stdout") is out
        assert real_stream("stderr") is err


async def test_an_unusable_log_path_raises_oserror(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with engine_streams(), pytest.raises(OSError), capture(str(tmp_path / "file" / "t.log")):
        pass


def test_cap_log_keeps_the_head_and_the_tail_with_a_marker(tmp_path: Path) -> None:
    log = tmp_path / "try.log"
    lines = [f"line {index:06}\n" for index in range(100_000)]
    log.write_text("".join(lines))
    size = log.stat().st_size
    cut = cap_log(str(log), 8192)
    text = log.read_text()
    assert log.stat().st_size <= 8192
    marker = f"\n[... {cut} bytes cut here: the log was over task_log_max_bytes (8192) ...]\n"
    assert len(text) - len(marker) + cut == size  # only the middle went
    assert text.startswith("line 000000\n")
    assert text.endswith("line 099999\n")
    assert marker in text


def test_cap_log_leaves_a_small_or_missing_log_alone(tmp_path: Path) -> None:
    log = tmp_path / "try.log"
    log.write_text("short\n")
    assert cap_log(str(log), 8192) == 0
    assert log.read_text() == "short\n"
    assert cap_log(str(tmp_path / "missing.log"), 8192) == 0


def test_only_a_log_over_the_cap_is_worth_a_trip_to_cap_log(tmp_path: Path) -> None:
    log = tmp_path / "try.log"
    log.write_text("x" * 8192)
    assert not log_over_cap(str(log), 8192)  # at the cap: nothing to cut
    log.write_text("x" * 8193)
    assert log_over_cap(str(log), 8192)
    assert not log_over_cap(str(tmp_path / "missing.log"), 8192)


def test_append_to_log_survives_a_log_it_cannot_write(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    append_to_log(str(blocker / "try.log"), "timed out")  # logged, not raised
