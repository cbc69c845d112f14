"""A daemon killed after a webhook's run commits, before its 2xx: the retry gets that run.

The sender never sees an answer, so it sends the delivery again (GitHub and Standard Webhooks
senders retry). The run committed before the kill must be the one the retry is answered
with, and the only run there is: one delivery, one run, even across a `kill -9`.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from contextlib import closing
from pathlib import Path
from typing import Any

import httpx
import pytest
from crashkit import DaemonProcess, api_url, check_invariants, new_marker, orphans, wait_until

from orchestrator.api.signatures import sign_github

pytestmark = pytest.mark.slow

SECRET = "crash-test-secret"
DAG_FILE = """
from orchestrator import DAG, task


@task(in_process=True)
def ship() -> str:
    return "shipped"


with DAG("deploy"):
    ship()
"""
PAYLOAD = json.dumps({"ref": "refs/heads/main", "after": "c0ffee"}).encode()


def cli(project: Path, *arguments: str) -> dict[str, Any]:
    """Run an `orchestrator` command with no daemon up, and return its --json output."""
    argv = [sys.executable, "-m", "orchestrator", *arguments, "--json"]
    argv += ["--state-dir", str(project / "state"), "--dags-folder", str(project / "dags")]
    environment = {**os.environ, "HOOK_SECRET": SECRET}
    done = subprocess.run(argv, env=environment, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    output: dict[str, Any] = json.loads(done.stdout)
    return output


def start(project: Path, marker: str, crash_at: str | None = None) -> DaemonProcess:
    environment = {"HOOK_SECRET": SECRET, "ORCHESTRATOR_API_PORT": "0"}
    return DaemonProcess(
        project / "state", project / "dags", marker=marker, crash_at=crash_at, env=environment
    )


def send(url: str) -> httpx.Response:
    headers = {
        "Content-Type": "application/json",
        "X-GitHub-Event": "push",
        "X-GitHub-Delivery": "delivery-1",
        "X-Hub-Signature-256": sign_github(SECRET.encode(), PAYLOAD),
    }
    return httpx.post(f"{url}/hooks/deploy", content=PAYLOAD, headers=headers, timeout=30)


def query(project: Path, sql: str) -> list[tuple[Any, ...]]:
    database = project / "state" / "orchestrator.db"
    with closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=5)) as connection:
        return list(connection.execute(sql))


def runs(project: Path) -> list[tuple[Any, ...]]:
    return query(project, "SELECT run_id, state, dedup_key FROM runs WHERE dag_id = 'deploy'")


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "dags").mkdir()
    (tmp_path / "dags" / "deploy.py").write_text(textwrap.dedent(DAG_FILE))
    cli(tmp_path, "webhooks", "add", "deploy", "--dag", "deploy", "--secret-env", "HOOK_SECRET")
    return tmp_path


def test_a_delivery_whose_answer_was_lost_to_a_kill_gets_its_committed_run_on_retry(
    project: Path,
) -> None:
    token = cli(project, "tokens", "create", "--scope", "read", "--name", "crash")["token"]
    marker = new_marker()
    with start(project, marker, crash_at="webhook_committed") as daemon:
        url = api_url(daemon)
        with pytest.raises(httpx.TransportError):  # killed after the commit, before answering
            send(url)
        assert daemon.wait_exit(30) == -signal.SIGKILL, daemon.log_text()
        assert "crash point 'webhook_committed' reached" in daemon.log_text()
    ((committed, _, key),) = runs(project)
    assert key == "webhook:deploy:delivery-1"
    with start(project, marker) as daemon:
        url = api_url(daemon)
        retry = send(url)
        assert retry.status_code == 200, retry.text
        assert retry.json() == {
            "run_id": committed,
            "dag_id": "deploy",
            "delivery_id": "delivery-1",
            "created": False,
        }
        wait_until(lambda: runs(project) == [(committed, "success", key)], 60, f"{daemon}")
        listed = httpx.get(
            f"{url}/api/v1/runs", headers={"Authorization": f"Bearer {token}"}, timeout=30
        )
        assert [run["run_id"] for run in listed.json()["runs"]] == [committed]
        daemon.terminate()
        assert daemon.wait_exit(30) == 0, daemon.log_text()
    assert query(project, "SELECT run_id FROM events") == [(committed,)]  # one event, one run
    assert check_invariants(project / "state" / "orchestrator.db", settled=True) == []
    wait_until(lambda: not orphans(marker), 15, "no process of the daemon's left behind")
