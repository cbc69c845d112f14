"""A daemon's webhook secrets never reach its tasks' environment, in workers or in-process.

The secret is still the daemon's: the webhook that names it verifies deliveries with it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import httpx
import pytest
from crashkit import DaemonProcess, new_marker, orphans, wait_until

from orchestrator.api.signatures import sign_github
from orchestrator.daemon.control import control_path, request_sync

pytestmark = pytest.mark.slow

SECRET = "the-webhook-secret"
NAMES = ("HOOK_SECRET", "ORCHESTRATOR_API_TOKEN", "ORCHESTRATOR_API_PORT", "PLAIN_SETTING")
DAG_FILE = """
import json
import os
from pathlib import Path

from orchestrator import DAG, task

OUT = Path({out!r})
NAMES = {names!r}


def note(where: str) -> None:
    seen = {{name: os.environ.get(name) for name in NAMES}}
    (OUT / f"{{where}}.json").write_text(json.dumps(seen))


@task
def in_worker() -> None:
    note("worker")


@task(in_process=True)
def in_engine() -> None:
    note("engine")


with DAG("deploy"):
    in_worker() >> in_engine()
"""
BODY = json.dumps({"ref": "refs/heads/main"}).encode()


def cli(project: Path, *arguments: str) -> None:
    argv = [sys.executable, "-m", "orchestrator", *arguments]
    argv += ["--state-dir", str(project / "state"), "--dags-folder", str(project / "dags")]
    environment = {**os.environ, "HOOK_SECRET": SECRET}
    done = subprocess.run(argv, env=environment, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def test_webhook_secrets_and_secret_settings_are_withheld_from_every_task(
    tmp_path: Path,
) -> None:
    (tmp_path / "dags").mkdir()
    dag = DAG_FILE.format(out=str(tmp_path), names=NAMES)
    (tmp_path / "dags" / "deploy.py").write_text(textwrap.dedent(dag))
    cli(tmp_path, "webhooks", "add", "deploy", "--dag", "deploy", "--secret-env", "HOOK_SECRET")
    environment = {
        "HOOK_SECRET": SECRET,
        "ORCHESTRATOR_API_TOKEN": "orch_0123456789ab_not-for-tasks",
        "ORCHESTRATOR_API_PORT": "0",
        "PLAIN_SETTING": "kept",
    }
    marker = new_marker()
    with DaemonProcess(
        tmp_path / "state", tmp_path / "dags", marker=marker, env=environment
    ) as daemon:
        daemon.wait_ready(30)

        def api() -> str:
            ping = request_sync(control_path(daemon.state_dir), {"op": "ping"})
            return str(ping.get("api") or "")

        url = wait_until(api, 30, f"the API to listen, {daemon}")
        headers = {
            "X-GitHub-Event": "push",
            "X-GitHub-Delivery": "env-1",
            "X-Hub-Signature-256": sign_github(SECRET.encode(), BODY),
        }
        answer = httpx.post(f"{url}/hooks/deploy", content=BODY, headers=headers, timeout=30)
        assert answer.status_code == 201, answer.text  # the daemon still verifies with it
        wait_until(lambda: (tmp_path / "engine.json").exists(), 60, f"both tasks, {daemon}")
        daemon.terminate()
        assert daemon.wait_exit(30) == 0, daemon.log_text()
    expected = {
        "HOOK_SECRET": None,
        "ORCHESTRATOR_API_TOKEN": None,
        "ORCHESTRATOR_API_PORT": "0",  # a setting, which `orchestrator` commands in tasks read
        "PLAIN_SETTING": "kept",
    }
    for where in ("worker", "engine"):
        assert json.loads((tmp_path / f"{where}.json").read_text()) == expected, where
    wait_until(lambda: not orphans(marker), 15, "no process of the daemon's left behind")
