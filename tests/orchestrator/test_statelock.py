"""The state directory's lock, with real holders: this process, child processes, dead ones."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import pytest
from anyio.abc import Process
from anyio.streams.buffered import BufferedByteReceiveStream

from orchestrator.daemon.state_lock import (
    LOCK_FILENAME,
    Holder,
    StateDirLock,
    StateDirLockedError,
    read_holder,
)
from orchestrator.errors import StateDirError

CHILD_COMMAND = "orchestrator daemon (test child)"

# Takes the lock, says so, and keeps it until its stdin closes.
HOLDER_SCRIPT = f"""
import sys
from pathlib import Path
from orchestrator.daemon.state_lock import StateDirLock
lock = StateDirLock.acquire(Path(sys.argv[1]), command={CHILD_COMMAND!r})
print("locked", flush=True)
sys.stdin.read()
"""


@asynccontextmanager
async def lock_holder(state_dir: Path) -> AsyncIterator[Process]:
    """A child process holding the lock on `state_dir` until the block exits."""
    process = await anyio.open_process([sys.executable, "-c", HOLDER_SCRIPT, str(state_dir)])
    async with process:
        assert process.stdout is not None
        with anyio.fail_after(10):
            line = await BufferedByteReceiveStream(process.stdout).receive_until(b"\n", 100)
        assert line == b"locked"
        try:
            yield process
        finally:
            if process.returncode is None:
                process.kill()


async def test_acquire_records_the_holder_and_release_frees_the_lock(tmp_path: Path) -> None:
    state_dir = tmp_path / "state" / "nested"
    lock = StateDirLock.acquire(state_dir, command="orchestrator daemon")
    content = json.loads((state_dir / LOCK_FILENAME).read_text())
    assert content["pid"] == os.getpid()
    assert content["command"] == "orchestrator daemon"
    assert content["started_at"].endswith("Z") and content["host"]
    assert read_holder(state_dir) == lock.holder
    assert lock.holder.pid == os.getpid()

    lock.release()
    lock.release()  # idempotent
    assert not lock.held
    assert read_holder(state_dir) is None
    with pytest.raises(ValueError, match="released already"):
        lock.fileno()


async def test_context_manager_releases_on_exit(tmp_path: Path) -> None:
    with StateDirLock.acquire(tmp_path, command="orchestrator daemon") as lock:
        assert lock.held
        assert read_holder(tmp_path) is not None
    assert not lock.held
    assert read_holder(tmp_path) is None
    StateDirLock.acquire(tmp_path, command="again").release()


async def test_a_second_acquire_in_the_same_process_fails(tmp_path: Path) -> None:
    with StateDirLock.acquire(tmp_path, command="orchestrator daemon"):
        with pytest.raises(StateDirLockedError) as caught:
            StateDirLock.acquire(tmp_path, command="orchestrator daemon")
    message = str(caught.value)
    assert isinstance(caught.value, StateDirError)
    assert str(tmp_path) in message
    assert f"pid {os.getpid()} (orchestrator daemon)" in message
    assert "since " in message
    assert f"systemctl stop orchestrator / kill {os.getpid()}" in message
    assert "or use another --state-dir" in message
    assert caught.value.holder.pid == os.getpid()


async def test_a_lock_held_by_another_process_names_it(tmp_path: Path) -> None:
    async with lock_holder(tmp_path) as child:
        with pytest.raises(StateDirLockedError, match=f"pid {child.pid} \\(orchestrator daemon"):
            StateDirLock.acquire(tmp_path, command="orchestrator daemon")
        holder = read_holder(tmp_path)
        assert holder is not None
        assert (holder.pid, holder.command) == (child.pid, CHILD_COMMAND)

        assert child.stdin is not None
        await child.stdin.aclose()  # the child exits, and its lock goes with it
        with anyio.fail_after(10):
            assert await child.wait() == 0
    assert read_holder(tmp_path) is None
    StateDirLock.acquire(tmp_path, command="orchestrator daemon").release()


async def test_a_sigkilled_holder_leaves_a_stale_file_and_no_lock(tmp_path: Path) -> None:
    async with lock_holder(tmp_path) as child:
        child.send_signal(signal.SIGKILL)
        with anyio.fail_after(10):
            assert await child.wait() == -signal.SIGKILL
    # The file still names the dead process; only the lock says whether anyone holds it.
    assert json.loads((tmp_path / LOCK_FILENAME).read_text())["pid"] == child.pid
    assert read_holder(tmp_path) is None
    with StateDirLock.acquire(tmp_path, command="orchestrator daemon") as lock:
        assert lock.holder.pid == os.getpid()
        assert json.loads((tmp_path / LOCK_FILENAME).read_text())["pid"] == os.getpid()


async def test_a_stale_file_with_garbage_is_no_holder(tmp_path: Path) -> None:
    # Longer than what acquire writes: the new content must not keep a tail of the old.
    (tmp_path / LOCK_FILENAME).write_bytes(b"\x00\xffnot json at all" * 100)
    assert read_holder(tmp_path) is None
    with StateDirLock.acquire(tmp_path, command="orchestrator daemon"):
        content = json.loads((tmp_path / LOCK_FILENAME).read_text())
        assert content["pid"] == os.getpid()


async def test_a_holder_with_unreadable_info_still_gets_a_clear_message(tmp_path: Path) -> None:
    async with lock_holder(tmp_path):
        (tmp_path / LOCK_FILENAME).write_bytes(b"{garbled")
        assert read_holder(tmp_path) == Holder()
        with pytest.raises(StateDirLockedError) as caught:
            StateDirLock.acquire(tmp_path, command="orchestrator daemon")
    message = str(caught.value)
    assert "did not say who it is" in message
    assert "systemctl stop orchestrator / kill PID" in message
    assert str(tmp_path) in message


def test_the_lock_is_not_inherited_by_child_processes(tmp_path: Path) -> None:
    lock = StateDirLock.acquire(tmp_path, command="orchestrator daemon")
    assert os.get_inheritable(lock.fileno()) is False
    # close_fds=False: only close-on-exec keeps the descriptor out of the child.
    with subprocess.Popen(
        [sys.executable, "-c", "print('running', flush=True); import sys; sys.stdin.read()"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        close_fds=False,
    ) as child:  # leaving closes its stdin, so it exits, and waits for it
        assert child.stdout is not None
        # Popen can return while the kernel is still closing the child's close-on-exec
        # descriptors; once the child's own code runs, exec is over.
        assert child.stdout.readline() == b"running\n"
        lock.release()
        # Had the child inherited the descriptor, it would still hold the lock.
        assert read_holder(tmp_path) is None
        StateDirLock.acquire(tmp_path, command="again").release()
    assert child.returncode == 0


async def test_a_state_dir_under_a_regular_file_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(StateDirError, match="regular file, not a directory") as caught:
        StateDirLock.acquire(blocker / "state", command="orchestrator daemon")
    assert str(blocker / "state") in str(caught.value)
    assert "--state-dir" in str(caught.value)
    with pytest.raises(StateDirError, match="regular file, not a directory"):
        StateDirLock.acquire(blocker, command="orchestrator daemon")
    assert read_holder(blocker / "state") is None


async def test_a_lock_file_that_is_a_directory_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / LOCK_FILENAME).mkdir()
    with pytest.raises(StateDirError, match=f"{LOCK_FILENAME} is a directory, not a file"):
        StateDirLock.acquire(tmp_path, command="orchestrator daemon")


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores permission bits")
async def test_a_read_only_state_dir_is_a_clear_error(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    state_dir.mkdir(mode=0o500)
    try:
        with pytest.raises(StateDirError, match="Permission denied") as caught:
            StateDirLock.acquire(state_dir, command="orchestrator daemon")
        assert str(state_dir) in str(caught.value)
    finally:
        state_dir.chmod(0o700)


async def test_read_holder_of_a_missing_state_dir_is_none(tmp_path: Path) -> None:
    assert read_holder(tmp_path / "never-created") is None
    assert not (tmp_path / "never-created").exists()  # asking does not create anything


async def test_holder_describe_says_as_much_as_is_known() -> None:
    full = Holder(
        pid=7, command="orchestrator daemon", started_at="2026-01-01T00:00:00Z", host="vm"
    )
    assert full.describe() == "pid 7 (orchestrator daemon) on host vm since 2026-01-01T00:00:00Z"
    assert Holder(pid=7).describe() == "pid 7"
    assert "did not say who it is" in Holder().describe()
