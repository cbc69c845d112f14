"""The inotify doorbell that lets the notifier thread sleep while nothing changes."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from triggers.doorbell import Doorbell, InotifyDoorbell, open_doorbell

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="inotify: Linux")

RINGS_WITHIN = 5.0  # seconds; `wait` returns as soon as the change is queued


@pytest.fixture
def doorbells() -> Iterator[list[Doorbell]]:
    opened: list[Doorbell] = []
    yield opened
    for doorbell in opened:
        doorbell.close()


def inotify_doorbell(opened: list[Doorbell], *, recursive: bool = False) -> Doorbell:
    doorbell = open_doorbell(recursive=recursive, polling=False)
    assert isinstance(doorbell, InotifyDoorbell)
    opened.append(doorbell)
    return doorbell


def test_a_change_in_a_watched_directory_rings(tmp_path: Path, doorbells: list[Doorbell]) -> None:
    doorbell = inotify_doorbell(doorbells)
    doorbell.watch(frozenset({str(tmp_path)}))
    assert doorbell.wait(0) is False
    (tmp_path / "a.csv").write_text("x")
    assert doorbell.wait(RINGS_WITHIN) is True
    assert doorbell.wait(0) is False  # the queue was drained


def test_wake_returns_at_once_without_a_change(tmp_path: Path, doorbells: list[Doorbell]) -> None:
    doorbell = inotify_doorbell(doorbells)
    doorbell.watch(frozenset({str(tmp_path)}))
    threading.Thread(target=doorbell.wake).start()
    assert doorbell.wait(60) is False  # returned long before the minute: the test would hang


def test_a_directory_no_longer_watched_stays_silent(
    tmp_path: Path, doorbells: list[Doorbell]
) -> None:
    kept, dropped = tmp_path / "kept", tmp_path / "dropped"
    kept.mkdir()
    dropped.mkdir()
    doorbell = inotify_doorbell(doorbells)
    doorbell.watch(frozenset({str(kept), str(dropped)}))
    doorbell.watch(frozenset({str(kept)}))
    doorbell.wait(0)  # drain whatever the removal queued (IN_IGNORED)
    (dropped / "a.csv").write_text("x")
    assert doorbell.wait(0) is False
    (kept / "a.csv").write_text("x")
    assert doorbell.wait(RINGS_WITHIN) is True


def test_a_subfolder_rings_only_in_a_recursive_watch(
    tmp_path: Path, doorbells: list[Doorbell]
) -> None:
    flat, deep = tmp_path / "flat", tmp_path / "deep"
    for root in (flat, deep):
        (root / "old").mkdir(parents=True)
    flat_bell = inotify_doorbell(doorbells)
    flat_bell.watch(frozenset({str(flat)}))
    deep_bell = inotify_doorbell(doorbells, recursive=True)
    deep_bell.watch(frozenset({str(deep)}))
    (flat / "old" / "a.csv").write_text("x")
    (deep / "old" / "a.csv").write_text("x")
    assert flat_bell.wait(0) is False
    assert deep_bell.wait(RINGS_WITHIN) is True


def test_a_folder_made_in_a_recursive_watch_is_watched_too(
    tmp_path: Path, doorbells: list[Doorbell]
) -> None:
    doorbell = inotify_doorbell(doorbells, recursive=True)
    doorbell.watch(frozenset({str(tmp_path)}))
    (tmp_path / "new").mkdir()
    assert doorbell.wait(RINGS_WITHIN) is True
    (tmp_path / "new" / "a.csv").write_text("x")
    assert doorbell.wait(RINGS_WITHIN) is True


def test_polling_gets_a_doorbell_that_never_sleeps(tmp_path: Path) -> None:
    doorbell = open_doorbell(recursive=False, polling=True)
    assert not isinstance(doorbell, InotifyDoorbell)
    doorbell.watch(frozenset({str(tmp_path)}))
    assert doorbell.wait(60) is False  # at once: the thread steps as it did before doorbells


def test_a_root_made_again_is_watched_again(tmp_path: Path, doorbells: list[Doorbell]) -> None:
    root = tmp_path / "incoming"
    root.mkdir()
    doorbell = inotify_doorbell(doorbells)
    doorbell.watch(frozenset({str(root)}))
    root.rmdir()
    assert doorbell.wait(RINGS_WITHIN) is True  # the deletion (and its watch gone with it)
    root.mkdir()
    doorbell.watch(frozenset({str(root)}))  # the same roots, a new directory
    (root / "a.csv").write_text("x")
    assert doorbell.wait(RINGS_WITHIN) is True


def test_a_wake_after_close_writes_nowhere(tmp_path: Path) -> None:
    doorbell = open_doorbell(recursive=False, polling=False)
    doorbell.close()
    reused = (tmp_path / "reused").open("wb")  # likely gets a number the doorbell held
    try:
        doorbell.wake()
        doorbell.close()  # twice: harmless
    finally:
        reused.close()
    assert (tmp_path / "reused").read_bytes() == b""
