"""What runs on a Dask worker, tested without a cluster: the cache of shipped DAG sources."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

pytest.importorskip("distributed")

from orchestrator.execution import dask_worker


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setattr(dask_worker, "DAG_VERSIONS_KEPT", 3)
    monkeypatch.setattr(dask_worker, "_dag_paths", {})
    return tmp_path / "orchestrator-dags"


def test_each_version_of_a_dag_file_is_written_once_under_its_hash(cache: Path) -> None:
    first = dask_worker._dag_file("x = 1\n", "/dags/etl.py")
    os.remove(first)  # a known version is not looked up on disk again
    assert dask_worker._dag_file("x = 1\n", "/elsewhere/etl.py") == first
    second = dask_worker._dag_file("x = 2\n", "/dags/etl.py")
    assert Path(second).read_text() == "x = 2\n" and Path(second).name == "etl.py"
    assert Path(second).parent.parent == cache and second != first


def test_the_cache_keeps_the_most_recently_used_versions(cache: Path) -> None:
    paths = [dask_worker._dag_file(f"x = {i}\n", "/dags/etl.py") for i in range(3)]
    for index, path in enumerate(paths):  # oldest first, whatever the clock's resolution
        os.utime(Path(path).parent, ns=(index * 10**9, index * 10**9))
    dask_worker._dag_paths.clear()  # another worker process: it has seen none of them
    dask_worker._dag_file("x = 0\n", "/dags/etl.py")  # used again: now the most recent
    dask_worker._dag_file("x = 3\n", "/dags/etl.py")  # a new version: one has to go
    kept = {Path(p).read_text() for p in cache.glob("*/etl.py")}
    assert kept == {"x = 0\n", "x = 2\n", "x = 3\n"}
