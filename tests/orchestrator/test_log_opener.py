"""Tries' logs opened off the event loop: one thread trip for the tries that ask together."""

from __future__ import annotations

import os
from pathlib import Path

import anyio
import pytest

from orchestrator.execution.log_capture import capture
from orchestrator.execution.log_opener import LogOpener


async def test_logs_asked_for_together_are_opened_in_one_trip(tmp_path: Path) -> None:
    opener = LogOpener()
    paths = [tmp_path / "dag" / f"run{n}" / "task" / "try-1.log" for n in range(5)]
    fds: dict[Path, int] = {}

    async def open_one(path: Path) -> None:
        fds[path] = await opener.open(str(path))

    async with anyio.create_task_group() as tg:
        for path in paths:
            tg.start_soon(open_one, path)
    assert opener.trips == 1
    for path in paths:
        os.write(fds[path], b"hello\n")
        os.close(fds[path])
        assert path.read_text() == "hello\n"  # the folders were made, the file created


async def test_a_log_that_cannot_be_opened_fails_only_its_own_try(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    opener = LogOpener()
    outcomes: dict[str, object] = {}

    async def open_one(name: str, path: Path) -> None:
        try:
            outcomes[name] = await opener.open(str(path))
        except OSError as error:
            outcomes[name] = error

    async with anyio.create_task_group() as tg:
        tg.start_soon(open_one, "bad", tmp_path / "file" / "try-1.log")  # under a file
        tg.start_soon(open_one, "good", tmp_path / "ok" / "try-1.log")
    assert isinstance(outcomes["bad"], OSError)
    good = outcomes["good"]
    assert isinstance(good, int)
    os.close(good)
    assert opener.trips == 1


async def test_a_cancelled_caller_still_gets_its_log(tmp_path: Path) -> None:
    """Cancelled while its trip is out, the caller gets the log it asked for (no fd leaks)."""
    opener = LogOpener()
    with anyio.CancelScope() as scope:
        scope.cancel()
        fd = await opener.open(str(tmp_path / "try-1.log"))
    os.close(fd)  # the caller owns it, and the cancel reaches it at its next checkpoint
    assert (tmp_path / "try-1.log").exists()


@pytest.mark.parametrize("max_bytes", [0, 1000])
async def test_capture_writes_to_a_log_opened_beforehand(tmp_path: Path, max_bytes: int) -> None:
    path = tmp_path / "try-1.log"
    path.write_text("earlier\n")
    fd = await LogOpener().open(str(path))
    with capture(str(path), max_bytes, fd=fd) as log:
        log.write("appended\n")
    assert path.read_text() == "earlier\nappended\n"
    with pytest.raises(OSError):
        os.fstat(fd)  # closed with the capture
