"""The commands that only read work on a state directory nobody may write: a read-only mount.

Tests run as root, which ignores permission bits, so the state directory is copied onto a
tmpfs remounted read-only, and each command runs as a real subprocess against the copy. SQLite
reads a WAL database through its `-shm` index and a reader must create that file when none is
there: each test leaves a different set of the database's companion files.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from diskkit import small_tmpfs

HELLO = """
from orchestrator import DAG, task


@task
def hello() -> int:
    return 1


with DAG("hello"):
    hello()
"""


def orchestrator(project: Path, state: Path, *args: str) -> subprocess.CompletedProcess[str]:
    where = ["--state-dir", str(state), "--dags-folder", str(project / "dags")]
    environment = {k: v for k, v in os.environ.items() if not k.startswith("ORCHESTRATOR")}
    return subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", *args, *where],
        capture_output=True,
        text=True,
        env=environment,
        timeout=60,
        check=False,
    )


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A DAGs folder and a state directory holding one finished run of `hello`."""
    (tmp_path / "dags").mkdir()
    (tmp_path / "dags" / "hello.py").write_text(HELLO)
    done = orchestrator(tmp_path, tmp_path / "state", "run", "hello")
    assert done.returncode == 0, done.stderr
    return tmp_path


@contextmanager
def read_only_copy(state: Path, mount_point: Path, files: list[str]) -> Iterator[Path]:
    """`files` of the state directory, copied onto a tmpfs mounted read-only at `mount_point`."""
    with small_tmpfs(mount_point, "64m"):
        copy = mount_point / "state"
        copy.mkdir()
        for name in files:
            shutil.copy2(state / name, copy / name)
        subprocess.run(["mount", "-o", "remount,ro", str(mount_point)], check=True)
        yield copy


def run_states(project: Path, state: Path) -> list[str]:
    done = orchestrator(project, state, "runs", "list", "--json")
    assert done.returncode == 0, done.stderr
    return [run["state"] for run in json.loads(done.stdout)]


def test_runs_list_db_check_and_dags_list_read_a_read_only_state_directory(
    project: Path,
) -> None:
    assert sorted(os.listdir(project / "state")) == [
        "begun-tries",
        "daemon.lock",
        "orchestrator.db",
        "orchestrator.db-walmark",
    ]  # a clean stop leaves no -wal and no -shm: SQLite would have to create the index (and
    # no `logs`: the quiet `hello` made none)
    with read_only_copy(
        project / "state", project / "mnt", ["orchestrator.db", "orchestrator.db-walmark"]
    ) as state:
        assert run_states(project, state) == ["success"]
        checked = orchestrator(project, state, "db", "check")
        listed = orchestrator(project, state, "dags", "list", "--json")
        assert sorted(os.listdir(state)) == ["orchestrator.db", "orchestrator.db-walmark"]

    assert (checked.returncode, checked.stdout.strip()) == (0, "ok"), checked.stderr
    assert listed.returncode == 0, listed.stderr
    assert [dag["dag_id"] for dag in json.loads(listed.stdout)["dags"]] == ["hello"]


@contextmanager
def commit_only_in_the_wal(state: Path) -> Iterator[None]:
    """Mark every run failed in a commit that stays in the `-wal` file while the block runs."""
    writer = sqlite3.connect(state / "orchestrator.db", isolation_level=None)
    try:
        writer.execute("PRAGMA wal_autocheckpoint = 0")
        writer.execute("UPDATE runs SET state = 'failed'")
        assert (state / "orchestrator.db-wal").stat().st_size > 0
        yield
    finally:
        writer.close()


def test_commits_in_the_wal_are_read_through_the_index_a_writer_left(project: Path) -> None:
    files = ["orchestrator.db", "orchestrator.db-wal", "orchestrator.db-shm"]
    with (
        commit_only_in_the_wal(project / "state"),
        read_only_copy(project / "state", project / "mnt", files) as state,
    ):
        assert run_states(project, state) == ["failed"]  # the main file alone says success


def test_commits_in_a_wal_without_its_index_are_refused_rather_than_missed(
    project: Path,
) -> None:
    files = ["orchestrator.db", "orchestrator.db-wal"]
    with (
        commit_only_in_the_wal(project / "state"),
        read_only_copy(project / "state", project / "mnt", files) as state,
    ):
        done = orchestrator(project, state, "runs", "list")

    assert done.returncode != 0
    assert "holds commits" in done.stderr
    assert "orchestrator.db-shm, which this process may not create" in done.stderr
