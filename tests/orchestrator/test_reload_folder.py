"""A DAGs folder replaced as a whole, as deploys do it: the daemon follows the new folder.

Deploys often swap the folder rather than edit its files: `rm -rf dags && cp -r build dags`,
a symlink moved to a new release (`ln -sfn releases/v2 dags`), or a Kubernetes ConfigMap
volume, whose files are symlinks through `..data`, itself swapped in one rename. An OS watch
follows the directory it was given, not its name, so each of these left the daemon blind to
every later change (and the ConfigMap's new content made no event under a DAG file's name).
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import textwrap
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import pytest
from startkit import until_true

from orchestrator.config import Settings
from orchestrator.daemon import reload
from orchestrator.daemon.reload import follow_dag_folder
from orchestrator.scheduling.engine import Engine

SettingsFactory = Callable[..., Settings]

HELLO = """
from orchestrator import DAG, task

with DAG({dag_id!r}, description={description!r}):
    @task
    def hello() -> str:
        return "hello"

    hello()
"""


def write_dag(path: Path, dag_id: str, description: str = "") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(HELLO.format(dag_id=dag_id, description=description)))


@asynccontextmanager
async def following(settings: Settings) -> AsyncIterator[Engine]:
    """An engine on the settings' DAGs folder, following it as the daemon does."""
    async with Engine.open(settings, start_runs=True) as engine:
        async with anyio.create_task_group() as group:
            await group.start(follow_dag_folder, engine)
            yield engine
            group.cancel_scope.cancel()


async def dags_become(engine: Engine, *dag_ids: str) -> None:
    await until_true(lambda: sorted(engine.dagbag.dags) == sorted(dag_ids))


async def test_a_folder_deleted_and_made_again_is_followed(
    make_settings: SettingsFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "orchestrator.reload")
    settings = make_settings()
    write_dag(settings.dags_folder / "a.py", "a")
    async with following(settings) as engine:
        assert sorted(engine.dagbag.dags) == ["a"]
        shutil.rmtree(settings.dags_folder)
        await dags_become(engine)
        write_dag(settings.dags_folder / "b.py", "b")  # `cp -r build dags`
        await dags_become(engine, "b")
        write_dag(settings.dags_folder / "c.py", "c")  # and the new folder is watched
        await dags_become(engine, "b", "c")
    assert "was replaced: following the new one" in caplog.text


async def test_a_folder_symlink_moved_to_another_release_is_followed(
    make_settings: SettingsFactory, tmp_path: Path
) -> None:
    releases = tmp_path / "releases"
    write_dag(releases / "v1" / "train.py", "train", "v1")
    write_dag(releases / "v2" / "train.py", "train", "v2")
    write_dag(releases / "v2" / "report.py", "report")
    link = tmp_path / "dags"
    link.symlink_to(releases / "v1")
    settings = make_settings(dags_folder=link)
    async with following(settings) as engine:
        assert engine.dagbag.dags["train"].description == "v1"
        (tmp_path / "dags.new").symlink_to(releases / "v2")
        os.replace(tmp_path / "dags.new", link)  # `ln -sfn releases/v2 dags`, atomically
        await until_true(lambda: engine.dagbag.dags["train"].description == "v2")
        await dags_become(engine, "report", "train")
        write_dag(releases / "v2" / "late.py", "late")
        await dags_become(engine, "late", "report", "train")


async def test_a_configmap_swapping_its_data_link_reloads_the_files_behind_it(
    make_settings: SettingsFactory,
) -> None:
    settings = make_settings()
    folder = settings.dags_folder
    write_dag(folder / "..2026_12_05_v1" / "train.py", "train", "v1")
    (folder / "..data").symlink_to("..2026_12_05_v1")
    (folder / "train.py").symlink_to("..data/train.py")
    async with following(settings) as engine:
        assert engine.dagbag.dags["train"].description == "v1"
        # What the kubelet does: the new version beside the old, then one rename of `..data`.
        write_dag(folder / "..2026_12_05_v2" / "train.py", "train", "v2 with a longer text")
        (folder / "..data_tmp").symlink_to("..2026_12_05_v2")
        os.replace(folder / "..data_tmp", folder / "..data")
        shutil.rmtree(folder / "..2026_12_05_v1")
        await until_true(lambda: engine.dagbag.dags["train"].description != "v1")
        assert engine.dagbag.dags["train"].description == "v2 with a longer text"


async def test_a_folder_made_after_the_start_is_followed_and_its_error_goes(
    make_settings: SettingsFactory,
) -> None:
    settings = make_settings()
    async with following(settings) as engine:
        [missing] = engine.dagbag.errors
        assert "does not exist" in missing.message
        write_dag(settings.dags_folder / "a.py", "a")
        await dags_become(engine, "a")
        assert engine.dagbag.errors == []


async def test_a_folder_the_os_will_not_watch_is_followed_by_its_stamps(
    make_settings: SettingsFactory,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    def no_watch(folder: str) -> None:  # the OS's limit on inotify instances, reached
        raise OSError(errno.EMFILE, "Too many open files (os error 24)")

    monkeypatch.setattr(reload, "_open_watcher", no_watch)
    settings = make_settings()
    write_dag(settings.dags_folder / "a.py", "a", "v1")
    async with following(settings) as engine:
        write_dag(settings.dags_folder / "a.py", "a", "v2 and longer")
        write_dag(settings.dags_folder / "b.py", "b")
        await dags_become(engine, "a", "b")
        await until_true(lambda: engine.dagbag.dags["a"].description == "v2 and longer")
    assert caplog.text.count("cannot watch the DAGs folder") == 1  # said once, not each second


class BrokenWatch:
    """A watch whose every `watch()` fails, as watchfiles' does once notify hit an error."""

    def __init__(self) -> None:
        self.calls = 0

    def watch(self, *args: object) -> object:
        self.calls += 1
        raise RuntimeError("inotify: event queue overflowed")

    def close(self) -> None:
        pass


async def test_a_watch_that_keeps_failing_is_reopened_without_spinning(
    make_settings: SettingsFactory,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    opened: list[BrokenWatch] = []

    def open_broken(folder: str) -> BrokenWatch:
        opened.append(BrokenWatch())
        return opened[-1]

    monkeypatch.setattr(reload, "_open_watcher", open_broken)
    settings = make_settings()
    write_dag(settings.dags_folder / "a.py", "a")
    async with following(settings) as engine:
        write_dag(settings.dags_folder / "b.py", "b")
        await dags_become(engine, "a", "b")  # found by the stamps meanwhile
        seen, started = len(opened), time.monotonic()
        await until_true(lambda: len(opened) >= seen + 2)
        # A full recheck interval passed between: a lower bound, which no slowness breaks
        # (without the pause, the watch was opened again as fast as it failed).
        assert time.monotonic() - started >= reload._RECHECK_MS / 1000
    assert caplog.text.count("event queue overflowed") == 1  # said once
