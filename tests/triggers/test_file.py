"""FileTrigger: real watchfiles on tmp_path, FakeClock where time matters."""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from orchestrator.clock import FakeClock
from orchestrator.errors import PolicyError, TriggerError, TriggerLoadError
from orchestrator.policy import InputPolicy
from triggers.base import TriggerEvent, TriggerRuntime, load_trigger, set_runtime
from triggers.file import FileTrigger, pattern_warning
from triggers.watch import WatchStatistics, watch_statistics

CLASSPATH = "triggers.file.FileTrigger"
LAST = "zzz-sentinel.csv"  # sorts after every other name, so it comes out last in a batch


@asynccontextmanager
async def running(trigger: FileTrigger) -> AsyncIterator[MemoryObjectReceiveStream[TriggerEvent]]:
    """Run `trigger` in a task of its own; its events come out of the stream."""
    send, receive = anyio.create_memory_object_stream[TriggerEvent](10_000)
    async with send, receive, anyio.create_task_group() as group:
        group.start_soon(_pump, trigger, send)
        yield receive
        group.cancel_scope.cancel()


async def _pump(trigger: FileTrigger, send: MemoryObjectSendStream[TriggerEvent]) -> None:
    events = trigger.run()
    try:
        async for event in events:
            await send.send(event)
    finally:
        await events.aclose()


async def next_event(events: MemoryObjectReceiveStream[TriggerEvent]) -> TriggerEvent:
    with anyio.fail_after(10):
        return await events.receive()


async def next_name(events: MemoryObjectReceiveStream[TriggerEvent]) -> str:
    name = (await next_event(events)).payload["name"]
    assert isinstance(name, str)
    return name


async def wait_until(condition: Callable[[], bool]) -> None:
    with anyio.fail_after(10):
        # Counters moved by other tasks and the watch thread have no event to wait on.
        while not condition():  # noqa: ASYNC110
            await anyio.sleep(0.001)


def land(path: Path, text: str = "x") -> None:
    """Write a file the recommended way: under a temporary name, then renamed into place."""
    partial = path.with_name(path.name + ".part")
    partial.write_text(text)
    os.replace(partial, path)


def watch_threads() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name.startswith("file-watch")]


async def test_files_already_there_count_and_new_ones_follow(tmp_path: Path) -> None:
    (tmp_path / "old.csv").write_text("a,b\n")
    async with running(FileTrigger(directory=str(tmp_path), pattern="*.csv")) as events:
        first = await next_event(events)
        land(tmp_path / "new.csv", "c,d,e\n")
        second = await next_event(events)
    path = str(tmp_path / "old.csv")
    stat = os.stat(path)
    assert first == TriggerEvent(
        {
            "path": path,
            "name": "old.csv",
            "directory": str(tmp_path),
            "size": 4,
            "mtime": stat.st_mtime_ns / 1e9,
        },
        dedup_key=f"{path}:4:{stat.st_mtime_ns}",
    )
    assert second.payload["name"] == "new.csv"
    assert second.payload["size"] == 6


async def test_an_atomic_rename_fires_once_with_the_final_size(tmp_path: Path) -> None:
    async with running(FileTrigger(directory=str(tmp_path))) as events:
        land(tmp_path / "ready.csv")
        assert await next_name(events) == "ready.csv"  # the watch is live

        (tmp_path / "x.csv.tmp").write_text("first part")
        with (tmp_path / "x.csv.tmp").open("a") as file:
            file.write(", second part")
        os.replace(tmp_path / "x.csv.tmp", tmp_path / "x.csv")
        land(tmp_path / LAST)
        event = await next_event(events)
        assert await next_name(events) == LAST  # no second x.csv event, no .tmp event
    assert event.payload["name"] == "x.csv"
    assert event.payload["size"] == len("first part, second part")


async def test_a_rewritten_file_is_a_new_event(tmp_path: Path) -> None:
    target = tmp_path / "model.csv"
    target.write_text("v1")
    async with running(FileTrigger(directory=str(tmp_path))) as events:
        first = await next_event(events)
        tmp = tmp_path / "model.csv.part"
        tmp.write_text("version 2")
        os.replace(tmp, target)
        second = await next_event(events)
    assert first.payload["path"] == second.payload["path"] == str(target)
    assert (first.payload["size"], second.payload["size"]) == (2, 9)
    assert first.dedup_key != second.dedup_key


async def test_in_progress_names_and_other_patterns_are_ignored(tmp_path: Path) -> None:
    ignored = [".hidden.csv", "a.csv.tmp", "b.csv.part", "c.csv.partial", "d.csv.crdownload"]
    ignored += ["e.csv~", "notes.txt"]
    async with running(FileTrigger(directory=str(tmp_path), pattern="*.csv*")) as events:
        land(tmp_path / "ready.csv")
        assert await next_name(events) == "ready.csv"
        for name in ignored:
            (tmp_path / name).write_text("x")
        land(tmp_path / LAST)
        assert await next_name(events) == LAST


async def test_in_progress_names_count_when_asked(tmp_path: Path) -> None:
    (tmp_path / ".hidden").write_text("x")
    (tmp_path / "b.part").write_text("x")
    trigger = FileTrigger(directory=str(tmp_path), ignore_partial=False)
    async with running(trigger) as events:
        names = {await next_name(events), await next_name(events)}
    assert names == {".hidden", "b.part"}


async def test_recursive_watches_subfolders_and_matches_relative_paths(tmp_path: Path) -> None:
    (tmp_path / "2026" / "01").mkdir(parents=True)
    (tmp_path / "2026" / "01" / "old.csv").write_text("x")
    trigger = FileTrigger(directory=str(tmp_path), pattern="*.csv", recursive=True)
    async with running(trigger) as events:
        first = await next_event(events)
        (tmp_path / "2027").mkdir()
        land(tmp_path / "2027" / "new.csv")
        second = await next_event(events)
    assert first.payload["path"] == str(tmp_path / "2026" / "01" / "old.csv")
    assert first.payload["name"] == "old.csv"
    assert second.payload["path"] == str(tmp_path / "2027" / "new.csv")


async def test_a_folder_pattern_matches_only_that_folder(tmp_path: Path) -> None:
    for year in ("2025", "2026"):
        (tmp_path / year).mkdir()
    trigger = FileTrigger(directory=str(tmp_path), pattern="2026/*.csv", recursive=True)
    async with running(trigger) as events:
        land(tmp_path / "2025" / "a.csv")
        land(tmp_path / "2026" / "b.csv")
        event = await next_event(events)
    assert event.payload["path"] == str(tmp_path / "2026" / "b.csv")


async def test_without_recursive_subfolders_are_ignored(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "early.csv").write_text("x")
    async with running(FileTrigger(directory=str(tmp_path))) as events:
        (tmp_path / "sub" / "late.csv").write_text("x")
        land(tmp_path / LAST)
        assert await next_name(events) == LAST


async def test_a_file_written_in_chunks_fires_once_it_held_still(tmp_path: Path) -> None:
    clock = FakeClock(start=1_000.0)
    set_runtime(TriggerRuntime(clock=clock))
    slow = tmp_path / "slow.csv"
    slow.write_bytes(b"x" * 10)  # the first chunk, before the trigger starts
    async with running(FileTrigger(directory=str(tmp_path), stable_for=10)) as events:
        await wait_until(lambda: clock.sleepers == 1)  # pending until 1010
        clock.advance(6)  # 1006: not yet
        with slow.open("ab") as file:
            file.write(b"y" * 10)  # the second chunk: the wait starts over
        clock.advance(5)  # 1011: past the first deadline, but the file changed since
        await wait_until(lambda: clock.sleepers == 1)  # waiting again
        with pytest.raises(anyio.WouldBlock):
            events.receive_nowait()

        clock.advance(30)
        event = await next_event(events)
    assert event.payload["size"] == 20


async def test_a_file_deleted_while_settling_never_fires(tmp_path: Path) -> None:
    clock = FakeClock(start=1_000.0)
    set_runtime(TriggerRuntime(clock=clock))
    (tmp_path / "gone.csv").write_text("x")
    (tmp_path / "kept.csv").write_text("x")
    async with running(FileTrigger(directory=str(tmp_path), stable_for=5)) as events:
        await wait_until(lambda: clock.sleepers == 1)  # both pending until 1005
        (tmp_path / "gone.csv").unlink()
        clock.advance(5)  # at once: the check at the deadline, not the watch, finds it gone
        assert await next_name(events) == "kept.csv"
        land(tmp_path / "later.csv")
        await wait_until(lambda: clock.sleepers == 1)  # later.csv settling; gone.csv forgotten
        clock.advance(5)
        assert await next_name(events) == "later.csv"


async def test_many_triggers_on_one_directory_share_one_os_watch(tmp_path: Path) -> None:
    received: list[tuple[int, str]] = []

    async def consume(index: int) -> None:
        async for event in FileTrigger(directory=str(tmp_path)).run():
            received.append((index, event.payload["name"]))

    async with anyio.create_task_group() as group:
        for index in range(1000):
            group.start_soon(consume, index)
        await wait_until(lambda: watch_statistics().subscribers == 1000)
        assert watch_statistics() == WatchStatistics(os_watches=1, subscribers=1000, polling=0)
        land(tmp_path / "shared.csv")
        await wait_until(lambda: len(received) == 1000)
        group.cancel_scope.cancel()
    assert sorted(received) == [(index, "shared.csv") for index in range(1000)]
    assert watch_statistics() == WatchStatistics(os_watches=0, subscribers=0, polling=0)


async def test_closing_the_trigger_releases_the_watch(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text("x")
    events = FileTrigger(directory=str(tmp_path)).run()
    with anyio.fail_after(10):
        await anext(events)
    assert watch_statistics().os_watches == 1
    assert len(watch_threads()) == 1
    await events.aclose()
    assert watch_statistics() == WatchStatistics(os_watches=0, subscribers=0, polling=0)
    assert watch_threads() == []


async def test_forced_polling_works(tmp_path: Path) -> None:
    (tmp_path / "before.csv").write_text("x")
    trigger = FileTrigger(directory=str(tmp_path), polling=True, poll_interval=0.05)
    async with running(trigger) as events:
        assert await next_name(events) == "before.csv"
        assert watch_statistics().polling == 1
        land(tmp_path / "after.csv")
        assert await next_name(events) == "after.csv"


async def test_a_missing_directory_is_an_error(tmp_path: Path) -> None:
    trigger = FileTrigger(directory=str(tmp_path / "nowhere"))
    with pytest.raises(TriggerError, match=r"directory .*nowhere does not exist"):
        async for _ in trigger.run():
            pass
    with pytest.raises(TriggerError, match=r"directory .*nowhere does not exist"):
        await trigger.poll()


@pytest.mark.parametrize("polling", [False, True])
async def test_a_directory_deleted_while_watched_is_an_error(tmp_path: Path, polling: bool) -> None:
    folder = tmp_path / "incoming"
    folder.mkdir()
    (folder / "a.csv").write_text("x")
    events = FileTrigger(directory=str(folder), polling=polling, poll_interval=0.05).run()
    with anyio.fail_after(10):
        await anext(events)  # watching now
        shutil.rmtree(folder)
        with pytest.raises(TriggerError, match=r"watched directory .*incoming was deleted"):
            await anext(events)
    await events.aclose()
    assert watch_statistics() == WatchStatistics(os_watches=0, subscribers=0, polling=0)


async def test_poll_checks_once(tmp_path: Path) -> None:
    trigger = FileTrigger(directory=str(tmp_path), pattern="*.csv")
    assert await trigger.poll() is None
    (tmp_path / "skip.csv.tmp").write_text("x")
    (tmp_path / "notes.txt").write_text("x")
    assert await trigger.poll() is None
    (tmp_path / "data.csv").write_text("abc")
    event = await trigger.poll()
    assert event is not None
    assert (event.payload["name"], event.payload["size"]) == ("data.csv", 3)


async def test_poll_with_stable_for_waits_for_an_old_enough_mtime(tmp_path: Path) -> None:
    (tmp_path / "data.csv").write_text("abc")
    mtime = (tmp_path / "data.csv").stat().st_mtime
    clock = FakeClock(start=mtime + 5)
    set_runtime(TriggerRuntime(clock=clock))
    trigger = FileTrigger(directory=str(tmp_path), stable_for=10)
    assert await trigger.poll() is None
    clock.advance(6)
    event = await trigger.poll()
    assert event is not None and event.payload["name"] == "data.csv"


def test_round_trip_through_json() -> None:
    full = FileTrigger(
        directory="data/incoming",
        pattern="2026/*.csv",
        recursive=True,
        stable_for=2.5,
        polling=True,
        poll_interval=0.5,
        trusted=False,
        ignore_partial=False,
    )
    for trigger in (full, FileTrigger(directory="/data")):
        classpath, kwargs = trigger.serialize()
        assert classpath == CLASSPATH
        assert load_trigger(classpath, json.loads(json.dumps(kwargs))) == trigger


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, r"missing 1 required keyword-only argument: 'directory'"),
        ({"directory": ""}, r"directory must be a non-empty string, got ''"),
        ({"directory": 5}, r"directory must be a non-empty string, got 5"),
        ({"directory": "d", "pattern": ""}, r"pattern must be a non-empty string"),
        ({"directory": "d\0"}, r"directory must not contain a NUL"),
        ({"directory": "d", "patern": "*"}, r"unexpected keyword argument 'patern'"),
        ({"directory": "d", "recursive": "yes"}, r"recursive must be true or false, got 'yes'"),
        ({"directory": "d", "polling": "auto"}, r"polling must be true or false"),
        ({"directory": "d", "stable_for": -1}, r"stable_for must be a number of seconds, 0 or"),
        ({"directory": "d", "stable_for": "10"}, r"stable_for must be a number of seconds"),
        ({"directory": "d", "stable_for": math.nan}, r"stable_for must be a number of seconds"),
        ({"directory": "d", "poll_interval": 0}, r"poll_interval .* more than 0; got 0"),
        ({"directory": "d", "poll_interval": -1.5}, r"poll_interval .* more than 0; got -1.5"),
    ],
)
def test_bad_arguments_are_rejected_clearly(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(TriggerLoadError, match=message):
        load_trigger(CLASSPATH, kwargs)


@pytest.mark.parametrize(
    ("pattern", "recursive", "warning"),
    [
        ("*.csv", False, None),
        ("2026/*.csv", True, None),
        ("2026/*.csv", False, r"contains '/'.*recursive=True"),
        ("incoming/", True, r"ends with '/'.*'incoming/\*'"),
        ("/data/*.csv", True, r"starts with '/'"),
        (".*", False, r"only matches hidden names"),
        ("sub/.cache/*", True, r"only matches hidden names"),
        ("*.part", False, r"ending in '.part'"),
        ("backup~", False, r"ending in '~'"),
    ],
)
def test_pattern_warning(pattern: str, recursive: bool, warning: str | None) -> None:
    found = pattern_warning(pattern, recursive)
    if warning is None:
        assert found is None
    else:
        assert found is not None
        assert re.search(warning, found), found


def test_pattern_warning_knows_partial_names_can_be_counted() -> None:
    assert pattern_warning("*.part", False, ignore_partial=False) is None


async def test_untrusted_directories_must_stay_under_the_allowed_roots(tmp_path: Path) -> None:
    allowed, outside = tmp_path / "allowed", tmp_path / "outside"
    (allowed / "in").mkdir(parents=True)
    outside.mkdir()
    (allowed / "in" / "a.csv").write_text("x")
    (outside / "b.csv").write_text("x")
    (allowed / "link").symlink_to(outside)
    set_runtime(TriggerRuntime(policy=InputPolicy(allowed_roots=(allowed,))))

    for directory in (outside, allowed / ".." / "outside", allowed / "link"):
        trigger = FileTrigger(directory=str(directory), trusted=False)
        with pytest.raises(PolicyError, match="outside the allowed roots"):
            await trigger.poll()
        with pytest.raises(PolicyError, match="outside the allowed roots"):
            async for _ in trigger.run():
                pass

    inside = FileTrigger(directory=str(allowed / "in"), trusted=False)
    event = await inside.poll()
    assert event is not None and event.payload["name"] == "a.csv"
    async with running(inside) as events:
        assert await next_name(events) == "a.csv"


@pytest.mark.parametrize(
    "fields",
    [
        {"directory": "/data/in"},
        {"directory": "/data/in/", "recursive": True},
        {"directory": "/data/./x/../in", "polling": True, "poll_interval": 0.5},
        {"directory": "relative/in"},
        {"directory": "."},
    ],
)
def test_the_sharing_of_a_file_trigger_is_made_from_its_fields_each_time(
    fields: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from triggers.base import Sharing
    from triggers.folder_host import Folder, FolderHost

    def made(trigger: FileTrigger) -> Sharing:
        folder = os.path.abspath(trigger.directory)
        key = Folder(folder, trigger.recursive, trigger.polling, trigger.poll_interval)
        return Sharing(FolderHost, key)

    trigger = FileTrigger(**fields)
    for where in (tmp_path, tmp_path / "other"):  # a relative folder follows the working one
        where.mkdir(exist_ok=True)
        monkeypatch.chdir(where)
        assert trigger.sharing() == made(trigger)
        assert FileTrigger(**fields).sharing() == made(trigger)
    assert FileTrigger(**fields, trusted=False).sharing() is None
    assert FileTrigger(**fields, stable_for=1).sharing() is None


def test_file_triggers_share_by_folder_and_by_how_it_is_watched() -> None:
    one = FileTrigger(directory="/data/in", pattern="a.csv").sharing()
    assert one == FileTrigger(directory="/data/in/", pattern="b.csv").sharing()
    for other in ({"recursive": True}, {"polling": False}, {"poll_interval": 2.0}):
        assert FileTrigger(directory="/data/in", **other).sharing() != one  # type: ignore[arg-type]
    assert FileTrigger(directory="/data/other").sharing() != one


def test_beyond_the_kept_sharings_each_is_still_made_right() -> None:
    import triggers.file

    kept = triggers.file._folder_sharing
    bound = kept.cache_info().maxsize or 0
    kept.cache_clear()
    count = bound + 5
    sharings = [FileTrigger(directory=f"/data/{n}").sharing() for n in range(count)]
    assert kept.cache_info().currsize == bound
    directories = [s.key.directory for s in sharings if s is not None]
    assert directories == [f"/data/{n}" for n in range(count)]
