"""The shared directory watch: one watch per directory, one notifier for all; real watchfiles."""

from __future__ import annotations

import logging
import os
import shutil
import threading
from collections.abc import Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import anyio
import pytest
from watchfiles._rust_notify import RustNotify, WatchfilesRustInternalError

import triggers.notifier_opening as opening_module
import triggers.watch as watch_module
from orchestrator.errors import TriggerError
from triggers.file_states import FileState, scan_directory
from triggers.mounts import filesystem_type, is_network_filesystem
from triggers.watch import (
    Subscription,
    WatchBatch,
    WatchStatistics,
    watch_directory,
    watch_statistics,
)

NO_WATCHES = WatchStatistics(os_watches=0, subscribers=0, polling=0)


async def wait_until(condition: Callable[[], bool]) -> None:
    """Wait for a condition the watch thread makes true, with a deadline."""
    with anyio.fail_after(10):
        # Counters moved by other tasks and the watch thread have no event to wait on.
        while not condition():  # noqa: ASYNC110
            await anyio.sleep(0.001)


async def receive_file(subscription: Subscription, name: str) -> FileState | None:
    """The state of `name` in the next batches that mention it."""
    with anyio.fail_after(10):
        while True:
            batch = await subscription.receive()
            if name in batch.files:
                return batch.files[name]


def watch_threads() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name.startswith("file-watch")]


async def test_one_os_watch_is_shared_by_every_spelling_of_a_directory(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    (tmp_path / "link").symlink_to(folder)
    spellings = [str(folder), f"{tmp_path}/in/../in/", str(tmp_path / "link")]
    async with AsyncExitStack() as stack:
        subscriptions = [
            await stack.enter_async_context(watch_directory(spelling)) for spelling in spellings
        ]
        assert watch_statistics() == WatchStatistics(os_watches=1, subscribers=3, polling=0)
        assert {subscription.directory for subscription in subscriptions} == {str(folder)}

        (folder / "a.csv").write_text("hello")
        for subscription in subscriptions:
            assert await receive_file(subscription, "a.csv") == FileState(
                size=5, mtime_ns=(folder / "a.csv").stat().st_mtime_ns
            )

        # Recursive and not recursive are two different OS watches.
        await stack.enter_async_context(watch_directory(str(folder), recursive=True))
        assert watch_statistics() == WatchStatistics(os_watches=2, subscribers=4, polling=0)
    assert watch_statistics() == NO_WATCHES


async def test_the_watch_stops_when_its_last_subscriber_leaves(tmp_path: Path) -> None:
    async with watch_directory(str(tmp_path)) as first:
        async with watch_directory(str(tmp_path)):
            assert len(watch_threads()) == 1
        # The other subscriber left; this one still gets changes.
        assert watch_statistics() == WatchStatistics(os_watches=1, subscribers=1, polling=0)
        (tmp_path / "b.txt").write_text("x")
        assert await receive_file(first, "b.txt") is not None
    assert watch_statistics() == NO_WATCHES
    assert watch_threads() == []


async def test_a_deleted_file_is_reported_as_none(tmp_path: Path) -> None:
    (tmp_path / "old.csv").write_text("x")
    async with watch_directory(str(tmp_path)) as subscription:
        (tmp_path / "old.csv").unlink()
        assert await receive_file(subscription, "old.csv") is None


async def test_many_directories_do_not_use_up_the_worker_threads(tmp_path: Path) -> None:
    # awatch would park one of anyio's 40 worker threads per directory; 50 would starve.
    folders = [tmp_path / f"d{index}" for index in range(50)]
    for folder in folders:
        folder.mkdir()
    async with AsyncExitStack() as stack:
        for folder in folders:
            await stack.enter_async_context(watch_directory(str(folder)))
        assert watch_statistics().os_watches == 50
        with anyio.fail_after(10):
            assert await anyio.to_thread.run_sync(lambda: "a worker is free") == "a worker is free"
    assert watch_statistics() == NO_WATCHES


async def test_a_recursive_watch_lists_a_folder_moved_in_whole(tmp_path: Path) -> None:
    watched, outside = tmp_path / "watched", tmp_path / "outside"
    watched.mkdir()
    (outside / "batch").mkdir(parents=True)
    (outside / "batch" / "x.csv").write_text("1,2")
    async with watch_directory(str(watched), recursive=True) as subscription:
        os.rename(outside / "batch", watched / "batch")
        assert await receive_file(subscription, "batch/x.csv") is not None


async def test_forced_polling_sees_changes(tmp_path: Path) -> None:
    async with watch_directory(str(tmp_path), polling=True, poll_interval=0.05) as subscription:
        assert subscription.polling
        assert watch_statistics() == WatchStatistics(os_watches=1, subscribers=1, polling=1)
        (tmp_path / "p.csv").write_text("abc")
        state = await receive_file(subscription, "p.csv")
    assert state is not None and state.size == 3
    assert watch_statistics() == NO_WATCHES


async def test_a_network_file_system_is_polled(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(watch_module, "filesystem_type", lambda path: "nfs4")
    async with watch_directory(str(tmp_path), poll_interval=0.05) as subscription:
        assert subscription.polling
    async with watch_directory(str(tmp_path), polling=False) as subscription:
        assert not subscription.polling  # forcing wins over detection


async def test_a_missing_directory_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(TriggerError, match=r"the directory .*nowhere does not exist"):
        async with watch_directory(str(tmp_path / "nowhere")):
            pass
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(TriggerError, match=r"file\.txt is not a directory"):
        async with watch_directory(str(tmp_path / "file.txt")):
            pass
    assert watch_statistics() == NO_WATCHES


@pytest.mark.parametrize("polling", [False, True])
@pytest.mark.parametrize("how", ["deleted", "moved"])
async def test_a_directory_deleted_while_watched_fails_the_subscription(
    tmp_path: Path, polling: bool, how: str
) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    async with watch_directory(str(folder), polling=polling, poll_interval=0.05) as subscription:
        if how == "deleted":
            shutil.rmtree(folder)
        else:
            folder.rename(tmp_path / "elsewhere")
        with pytest.raises(TriggerError, match=r"watched directory .*in was deleted or moved"):
            await receive_file(subscription, "never")
        assert watch_statistics().os_watches == 0  # a new subscriber would get a new watch
    assert watch_statistics() == NO_WATCHES
    assert watch_threads() == []


async def test_the_watch_limit_falls_back_to_polling_and_says_how_to_fix_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def limited(paths: list[str], debug: bool, force_polling: bool, *rest: Any) -> RustNotify:
        if not force_polling:  # what notify says when inotify_add_watch fails with ENOSPC
            raise OSError("OS file watch limit reached. (Error { kind: MaxFilesWatch })")
        return RustNotify(paths, debug, force_polling, *rest)

    monkeypatch.setattr(opening_module, "RustNotify", limited)
    with caplog.at_level(logging.WARNING, logger="triggers.watch"):
        async with watch_directory(str(tmp_path), poll_interval=0.05) as subscription:
            assert subscription.polling
            assert watch_statistics().polling == 1
            (tmp_path / "late.csv").write_text("x")
            assert await receive_file(subscription, "late.csv") is not None
    assert "fs.inotify.max_user_watches=" in caplog.text
    assert "Polling it every 0.1 s" in caplog.text


async def test_a_watcher_error_is_logged_and_subscribers_rescan(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    opened: list[_FailingOnce] = []

    def failing_once(*args: Any) -> _FailingOnce:
        opened.append(_FailingOnce(RustNotify(*args), fail=not opened))
        return opened[-1]

    monkeypatch.setattr(opening_module, "RustNotify", failing_once)
    with caplog.at_level(logging.WARNING, logger="triggers.watch"):
        async with watch_directory(str(tmp_path)) as subscription:
            with anyio.fail_after(10):
                batch = await subscription.receive()
            assert batch == WatchBatch(rescan=True)
            # The watch was re-opened and works.
            (tmp_path / "after.csv").write_text("x")
            assert await receive_file(subscription, "after.csv") is not None
    assert len(opened) == 2
    assert "re-opening the watch and rescanning" in caplog.text


class _FailingOnce:
    """A RustNotify whose first watch() fails the way a broken underlying watcher does."""

    def __init__(self, notify: RustNotify, *, fail: bool) -> None:
        self._notify = notify
        self._fail = fail

    def watch(self, *args: Any) -> Any:
        if self._fail:
            self._fail = False
            raise WatchfilesRustInternalError("error in underlying watcher: simulated")
        return self._notify.watch(*args)

    def __enter__(self) -> _FailingOnce:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._notify.close()


async def test_a_subscriber_that_falls_behind_is_told_to_rescan(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(watch_module, "MAX_PENDING_FILES", 3)
    async with watch_directory(str(tmp_path)) as subscription:
        for index in range(10):  # never taken: batches pile up
            (tmp_path / f"{index}.csv").write_text("x")
        await wait_until(lambda: subscription.pending is not None and subscription.pending.rescan)
        assert subscription.take() == WatchBatch(rescan=True)


def test_merged_batches_keep_the_latest_state_of_each_path() -> None:
    first = WatchBatch(files={"a": FileState(1, 1), "b": FileState(2, 2)})
    later = WatchBatch(files={"a": None, "c": FileState(3, 3)})
    assert first.merged(later) == WatchBatch(
        files={"a": None, "b": FileState(2, 2), "c": FileState(3, 3)}
    )
    assert first.merged(WatchBatch(rescan=True)) == WatchBatch(rescan=True)


def test_scan_lists_files_and_skips_folders_unless_recursive(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text("12")
    (tmp_path / "sub" / "deeper").mkdir(parents=True)
    (tmp_path / "sub" / "deeper" / "b.csv").write_text("123")
    (tmp_path / "loop").symlink_to(tmp_path)  # a link loop is not followed
    assert set(scan_directory(str(tmp_path), recursive=False)) == {"a.csv"}
    found = scan_directory(str(tmp_path), recursive=True)
    assert set(found) == {"a.csv", "sub/deeper/b.csv"}
    assert found["sub/deeper/b.csv"].size == 3


MOUNTINFO = """\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
30 22 0:40 / /mnt/share rw,relatime shared:5 - nfs4 server:/export rw,vers=4.2
31 30 0:41 / /mnt/share/local rw - tmpfs tmpfs rw
32 22 0:42 / /mnt/my\\040files rw - fuse.sshfs user@host:/ rw
33 22 0:43 / /data rw - ext4 /dev/sdb1 rw
34 22 0:44 / /data rw - cifs //nas/data rw
"""


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/home/user", "ext4"),
        ("/mnt/share", "nfs4"),
        ("/mnt/share/in/coming", "nfs4"),
        ("/mnt/share/local/x", "tmpfs"),  # the longest mount point wins
        ("/mnt/shared", "ext4"),  # a prefix of a name is not a parent folder
        ("/mnt/my files/in", "fuse.sshfs"),  # mountinfo escapes the space
        ("/data/x", "cifs"),  # the later mount on one point hides the earlier
    ],
)
def test_filesystem_type_from_mountinfo(path: str, expected: str) -> None:
    assert filesystem_type(path, MOUNTINFO) == expected


def test_network_file_systems_are_recognised(tmp_path: Path) -> None:
    for fstype in ("nfs", "nfs4", "cifs", "smb3", "fuse.sshfs", "9p", "ceph", "lustre"):
        assert is_network_filesystem(fstype), fstype
    for fstype in ("ext4", "xfs", "btrfs", "tmpfs", "overlay", "fuse.portal", None):
        assert not is_network_filesystem(fstype), fstype
    assert filesystem_type(str(tmp_path)) is not None  # read from this machine's mountinfo


# -- one notifier shared by every directory ---------------------------------------------------


def inotify_instances() -> int:
    """The inotify instances this process holds open (Linux: one fd each)."""
    fds = os.listdir("/proc/self/fd")
    return sum(_readlink(f"/proc/self/fd/{fd}") == "anon_inode:inotify" for fd in fds)


def _readlink(path: str) -> str:
    try:
        return os.readlink(path)
    except OSError:  # the fd listing itself, closed meanwhile
        return ""


def make_folders(tmp_path: Path, count: int) -> list[Path]:
    folders = [tmp_path / f"d{index}" for index in range(count)]
    for folder in folders:
        folder.mkdir()
    return folders


async def test_a_hundred_directories_share_one_notifier_and_get_only_their_changes(
    tmp_path: Path,
) -> None:
    folders = make_folders(tmp_path, 100)
    instances_before = inotify_instances()
    async with AsyncExitStack() as stack:
        subscriptions = [
            await stack.enter_async_context(watch_directory(str(folder))) for folder in folders
        ]
        statistics = watch_statistics()
        assert (statistics.os_watches, statistics.notifiers, statistics.polling) == (100, 1, 0)
        assert len(watch_threads()) == 1
        # One notifier and its doorbell (`triggers.doorbell`): the old notifiers were closed.
        # (notify's own thread closes a dropped watcher's inotify fd: soon, not at once.)
        await wait_until(lambda: inotify_instances() - instances_before == 2)
        for index in (0, 57, 99):
            (folders[index] / f"{index}.csv").write_text("x")
            batch = await subscriptions[index].receive()
            assert set(batch.files) == {f"{index}.csv"}
        # A slow machine may split one write into two batches (made, then written): a folder
        # written to may still hold its own file; every other folder holds nothing.
        leftovers = {
            index: (set(subscription.pending.files), subscription.pending.rescan)
            for index, subscription in enumerate(subscriptions)
            if subscription.pending is not None
        }
        assert set(leftovers) <= {0, 57, 99}, leftovers
        assert all(
            files <= {f"{index}.csv"} and not rescan for index, (files, rescan) in leftovers.items()
        ), leftovers
    assert watch_statistics() == NO_WATCHES
    assert watch_statistics().notifiers == 0
    assert watch_threads() == []


async def test_arming_many_directories_at_once_opens_few_notifiers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folders = make_folders(tmp_path, 100)
    opened: list[list[str]] = []

    def counting(paths: list[str], *rest: Any) -> RustNotify:
        opened.append(paths)
        return RustNotify(paths, *rest)

    monkeypatch.setattr(opening_module, "RustNotify", counting)
    async with AsyncExitStack() as stack:
        armed = anyio.Event()

        async def arm(folder: Path) -> None:
            await stack.enter_async_context(watch_directory(str(folder)))
            if watch_statistics().subscribers == len(folders):
                armed.set()

        with anyio.fail_after(10):
            async with anyio.create_task_group() as group:
                for folder in folders:
                    group.start_soon(arm, folder)
            await armed.wait()
        # Joins are coalesced while a notifier opens, not one notifier per directory.
        assert len(opened) < 25
        assert set(opened[-1]) == {str(folder) for folder in folders}
        assert watch_statistics().notifiers == 1


async def test_a_directory_deleted_fails_only_its_own_subscriptions(tmp_path: Path) -> None:
    doomed, kept = make_folders(tmp_path, 2)
    async with watch_directory(str(kept)) as survivor:
        async with watch_directory(str(doomed)) as subscription:
            shutil.rmtree(doomed)
            with pytest.raises(TriggerError, match=r"watched directory .*d0 was deleted"):
                await receive_file(subscription, "never")
        (kept / "still.csv").write_text("x")
        assert await receive_file(survivor, "still.csv") is not None
        # Made again, the directory gets a fresh watch that works.
        doomed.mkdir()
        async with watch_directory(str(doomed)) as again:
            (doomed / "new.csv").write_text("x")
            assert await receive_file(again, "new.csv") is not None
        assert watch_statistics().notifiers == 1
    assert watch_threads() == []


async def test_nested_roots_each_get_the_change_relative_to_themselves(tmp_path: Path) -> None:
    inner = tmp_path / "outer" / "inner"
    inner.mkdir(parents=True)
    async with AsyncExitStack() as stack:
        outer_recursive = await stack.enter_async_context(
            watch_directory(str(tmp_path / "outer"), recursive=True)
        )
        inner_recursive = await stack.enter_async_context(
            watch_directory(str(inner), recursive=True)
        )
        inner_flat = await stack.enter_async_context(watch_directory(str(inner)))
        outer_flat = await stack.enter_async_context(watch_directory(str(tmp_path / "outer")))
        assert watch_statistics().notifiers == 2  # recursive or not: two groups
        (inner / "f.csv").write_text("x")
        assert await receive_file(outer_recursive, "inner/f.csv") is not None
        assert await receive_file(inner_recursive, "f.csv") is not None
        assert await receive_file(inner_flat, "f.csv") is not None
        assert outer_flat.pending is None or "inner/f.csv" not in outer_flat.pending.files


async def test_a_directory_leaving_re_opens_the_notifier_for_the_others(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second = make_folders(tmp_path, 2)
    opened: list[list[str]] = []

    def counting(paths: list[str], *rest: Any) -> RustNotify:
        opened.append(paths)
        return RustNotify(paths, *rest)

    monkeypatch.setattr(opening_module, "RustNotify", counting)
    async with watch_directory(str(first)) as staying:
        async with watch_directory(str(second)):
            assert opened[-1] == sorted([str(first), str(second)])
        assert opened[-1] == [str(first)]
        (first / "after.csv").write_text("x")
        assert await receive_file(staying, "after.csv") is not None


async def test_polling_directories_share_a_poller_at_the_shortest_interval(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    slow, fast = make_folders(tmp_path, 2)
    opened: list[tuple[list[str], int]] = []

    def recording(paths: list[str], debug: bool, polling: bool, delay: int, *rest: Any) -> Any:
        opened.append((paths, delay))
        return RustNotify(paths, debug, polling, delay, *rest)

    monkeypatch.setattr(opening_module, "RustNotify", recording)
    async with watch_directory(str(slow), polling=True, poll_interval=30) as slow_subscription:
        async with watch_directory(str(fast), polling=True, poll_interval=0.05):
            assert opened[-1] == (sorted([str(slow), str(fast)]), 50)
            assert watch_statistics().notifiers == 1
            # Polled every 50 ms now, although it asked for 30 s.
            (slow / "s.csv").write_text("x")
            assert await receive_file(slow_subscription, "s.csv") is not None


async def test_only_directories_past_the_watch_limit_fall_back_to_polling(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    first, second = make_folders(tmp_path, 2)

    def one_watch(paths: list[str], debug: bool, force_polling: bool, *rest: Any) -> RustNotify:
        if not force_polling and len(paths) > 1:
            raise OSError("OS file watch limit reached. (Error { kind: MaxFilesWatch })")
        return RustNotify(paths, debug, force_polling, *rest)

    monkeypatch.setattr(opening_module, "RustNotify", one_watch)
    with caplog.at_level(logging.WARNING, logger="triggers.watch"):
        async with watch_directory(str(first)) as watched:
            async with watch_directory(str(second), poll_interval=0.05) as polled:
                assert (watched.polling, polled.polling) == (False, True)
                statistics = watch_statistics()
                assert (statistics.polling, statistics.notifiers) == (1, 2)
                (second / "p.csv").write_text("x")
                (first / "o.csv").write_text("x")
                assert await receive_file(polled, "p.csv") is not None
                assert await receive_file(watched, "o.csv") is not None
    assert f"cannot watch {second} with OS notifications" in caplog.text
    assert f"cannot watch {first} " not in caplog.text


def test_opening_leaves_out_the_roots_that_cannot_be_watched(tmp_path: Path) -> None:
    present, missing, vanished = str(tmp_path), str(tmp_path / "missing"), str(tmp_path / "gone")
    opened = opening_module.open_notifier(
        frozenset({present, missing, vanished}),
        recursive=False,
        polling=False,
        poll_delay_ms=100,
        known=frozenset({vanished}),
    )
    assert opened.handle is not None
    with opened.handle.notify:
        assert opened.roots == {present}
    assert opened.failed == {
        missing: f"the directory {missing} does not exist",
        vanished: f"the watched directory {vanished} was deleted or moved away",
    }
    assert opened.to_polling == {}
