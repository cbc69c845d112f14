"""The README's webhook section, for real: its commands, on a daemon serving examples/.

The daemon runs as a real process; the webhook and the token are made with the CLI lines the
README prints; the `curl` blocks are the README's own text, run by bash with the real curl and
openssl. Only the address changes: the daemon listens on a free port, not 8686, so tests can
run side by side. A README edit that breaks a command breaks these tests.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from crashkit import DaemonProcess, new_marker, wait_until

from orchestrator.daemon.control import control_path, request_sync

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
SECTION = "## Runs started by a webhook"
README_URL = "http://127.0.0.1:8686"
DAG_ID = "retrain_on_push"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (shutil.which("curl") and shutil.which("openssl") and shutil.which("bash")),
        reason="the README's commands need bash, curl and openssl on the PATH",
    ),
]

# -- the README -----------------------------------------------------------------------------------


def section() -> str:
    """The webhook section of the README, up to the next heading."""
    text = (ROOT / "README.md").read_text()
    assert SECTION in text, f"the README has no {SECTION!r} section"
    return text.split(SECTION, 1)[1].split("\n## ", 1)[0]


def block(containing: str, language: str = "sh") -> str:
    for body in re.findall(rf"```{language}\n(.*?)```", section(), re.DOTALL):
        if containing in body:
            return str(body)
    raise AssertionError(f"the webhook section has no {language} block containing {containing!r}")


def command_line(text: str, prefix: str) -> list[str]:
    """The arguments of the command starting with `prefix`, its `\\` continuations joined."""
    joined = text.replace("\\\n", " ")
    for line in joined.splitlines():
        if line.startswith(prefix):
            return shlex.split(line, comments=True)
    raise AssertionError(f"no line starts with {prefix!r} in:\n{text}")


# -- the daemon and the commands ------------------------------------------------------------------


@dataclass
class Setup:
    """A daemon on examples/ with the README's webhook, and how to reach it."""

    daemon: DaemonProcess
    root: Path
    url: str
    environment: dict[str, str]  # the user's shell: the secret exported, no ORCHESTRATOR_*

    def orchestrator(self, argv: list[str]) -> str:
        """Run an `orchestrator ...` line of the README in the shell; its output."""
        assert argv[0] == "orchestrator", argv
        completed = subprocess.run(
            [sys.executable, "-m", "orchestrator.cli", *argv[1:]],
            cwd=self.root,
            env=self.environment,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert completed.returncode == 0, completed.stdout + completed.stderr
        return completed.stdout

    def bash(self, script: str, **variables: str) -> Any:
        """Run a README block with bash, at the daemon's address; the JSON it printed."""
        assert README_URL in script, f"the block no longer sends to {README_URL}:\n{script}"
        completed = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", script.replace(README_URL, self.url)],
            cwd=self.root,
            env={**self.environment, **variables},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert completed.returncode == 0, completed.stdout + completed.stderr
        return json.loads(completed.stdout)

    def runs(self) -> list[tuple[str, str, dict[str, Any]]]:
        database = self.root / ".orchestrator" / "orchestrator.db"
        with closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as connection:
            sql = "SELECT run_id, state, conf FROM runs WHERE dag_id = ? ORDER BY run_id"
            rows = connection.execute(sql, (DAG_ID,)).fetchall()
        return [(run_id, state, json.loads(conf)) for run_id, state, conf in rows]

    def finished(self, run_id: str) -> tuple[str, dict[str, Any]]:
        """The run's final state and conf, once it has one."""
        found = wait_until(
            lambda: [r for r in self.runs() if r[0] == run_id and r[1] in ("success", "failed")],
            120,
            f"run {run_id} to finish",
        )
        return found[0][1], found[0][2]


@contextmanager
def readme_setup(tmp_path: Path) -> Iterator[Setup]:
    """The section's first block: the secret exported, the daemon started, the webhook added."""
    setup = block("orchestrator webhooks add")
    assert "orchestrator daemon --dags-folder examples/ &" in setup
    export = next(line for line in setup.splitlines() if line.startswith("export RETRAIN_SECRET"))
    shell = {k: v for k, v in os.environ.items() if not k.startswith("ORCHESTRATOR_")}
    secret = subprocess.run(
        ["bash", "-c", f'{export.split("#")[0]}; printf %s "$RETRAIN_SECRET"'],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert len(secret) == 64, secret  # openssl rand -hex 32
    shell["RETRAIN_SECRET"] = secret
    state = tmp_path / ".orchestrator"
    daemon_env = {"ORCHESTRATOR_API_PORT": "0", "RETRAIN_SECRET": secret}
    with DaemonProcess(
        state, EXAMPLES, marker=new_marker(), env=daemon_env, cwd=tmp_path
    ) as daemon:
        daemon.wait_ready(60)
        url = wait_until(lambda: _api_url(state), 30, "the daemon's API to listen")
        ready = Setup(daemon, tmp_path, url, shell)
        added = ready.orchestrator(command_line(setup, "orchestrator webhooks add"))
        assert f"{url}/hooks/retrain" in added, added
        yield ready
        daemon.terminate()
        assert daemon.wait_exit(60) == 0, daemon.log_text()


def _api_url(state: Path) -> str | None:
    api = request_sync(control_path(state), {"op": "ping"}).get("api")
    return str(api) if api else None


# -- the tests ------------------------------------------------------------------------------------


def test_the_readme_curl_starts_one_run_that_trains_on_the_pushed_commit(tmp_path: Path) -> None:
    delivery = block("X-Hub-Signature-256")
    body = re.search(r"^body='(.*)'$", delivery, re.MULTILINE)
    assert body is not None, delivery
    payload = json.loads(body.group(1))
    shown = json.loads(block('"created":true', "json"))
    with readme_setup(tmp_path) as setup:
        answer = setup.bash(delivery)
        assert {**answer, "run_id": "as shown"} == {**shown, "run_id": "as shown"}
        state, conf = setup.finished(answer["run_id"])
        assert state == "success", setup.daemon.log_text()
        # Sent again (GitHub redelivers when it missed our answer): the same run, no second one.
        again = setup.bash(delivery)
        assert again["run_id"] == answer["run_id"] and again["created"] is False
        assert len(setup.runs()) == 1
    assert conf["sha"] == payload["after"] and conf["branch"] == payload["ref"]
    assert conf["webhook"] == {"name": "retrain", "delivery_id": shown["delivery_id"]}
    card = tmp_path / "models" / DAG_ID / payload["after"][:12] / "card.json"
    registered = json.loads(card.read_text())
    assert registered["run_id"] == answer["run_id"] and registered["sha"] == payload["after"]
    assert 0.5 < registered["metrics"]["accuracy"] <= 1.0


def test_the_readme_curl_is_refused_with_a_wrong_secret_and_ignored_for_another_branch(
    tmp_path: Path,
) -> None:
    delivery = block("X-Hub-Signature-256")
    with readme_setup(tmp_path) as setup:
        forged = setup.bash(delivery, RETRAIN_SECRET="not-the-secret")
        other_branch = setup.bash(delivery.replace("refs/heads/main", "refs/heads/dev"))
        runs = setup.runs()
    assert forged["error"]["status"] == 401
    assert "not signed with this webhook's secret" in forged["error"]["message"]
    assert other_branch == {
        "run_id": None,
        "created": False,
        "ignored": "ref is 'refs/heads/dev', not refs/heads/main",
    }
    assert runs == []


def test_the_readme_token_and_bearer_curl_start_a_run(tmp_path: Path) -> None:
    tokens = block("orchestrator tokens create")
    with readme_setup(tmp_path) as setup:
        printed = setup.orchestrator(command_line(tokens, "orchestrator tokens create"))
        token = re.search(r"\borch_[0-9a-f]{12}_[A-Za-z0-9_-]+", printed)
        assert token is not None, printed
        refused = setup.bash(tokens.split("\n", 1)[1], TOKEN="orch_000000000000_not-a-token")
        answer = setup.bash(tokens.split("\n", 1)[1], TOKEN=token.group(0))
        state, conf = setup.finished(answer["run"]["run_id"])
    assert refused["error"]["status"] == 401
    assert token.group(0) not in refused["error"]["message"]
    assert answer["created"] is True and state == "success"
    assert conf == {"sha": "9fceb02d0ae598e95dc970b74767f19372d61af8", "branch": "refs/heads/main"}
