"""`orchestrator webhooks`: add, list and remove, in the store alone and through a daemon.

Commands run in-process with click's CliRunner; the daemon is a real subprocess
(`crashkit.DaemonProcess`) with its HTTP API on a free port, so a webhook added through it
is sent a real signed delivery.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from clikit import CliCalls
from crashkit import DaemonProcess, new_marker, wait_until

from orchestrator.api.signatures import sign_github
from orchestrator.cli import cli
from orchestrator.daemon.control import control_path, request_sync

DAGS = """
from orchestrator.authoring.context import TaskContext
from orchestrator.authoring.dag import DAG
from orchestrator.authoring.taskflow import task


@task(in_process=True)
def note(context: TaskContext) -> str:
    return str(context.conf.get("sha"))


with DAG("train"):
    note()
"""
DEADLINE = 30.0
SECRET = "daemon-only-secret"


@dataclass(frozen=True)
class Project(CliCalls):
    root: Path
    dags: Path
    state: Path

    def refused(self, *args: str) -> str:
        """The one-line error of a command that must fail as a user mistake (exit 2)."""
        result = self.invoke(*args)
        assert result.exit_code == 2, (result.stdout, result.stderr, result.exception)
        return result.stderr.strip()


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Project:
    """A DAGs folder with one DAG, no state yet, and no ORCHESTRATOR_* or secret variable."""
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith("ORCHESTRATOR_") or name.endswith("_SECRET"):
            monkeypatch.delenv(name)
    project = Project(root=tmp_path, dags=tmp_path / "dags", state=tmp_path / "state")
    project.dags.mkdir()
    (project.dags / "pipelines.py").write_text(DAGS)
    return project


@contextmanager
def daemon(project: Project) -> Iterator[str]:
    """A daemon with RETRAIN_SECRET in its environment (not the test's); yields its API URL."""
    environment = {"ORCHESTRATOR_API_PORT": "0", "RETRAIN_SECRET": SECRET}
    marker = new_marker()
    with DaemonProcess(project.state, project.dags, marker=marker, env=environment) as process:
        process.wait_ready(DEADLINE)
        # The control socket answers before the API listens: wait until the daemon says where.
        api_url = wait_until(lambda: api_of(project), DEADLINE, "the daemon's API to listen")
        yield str(api_url)
        process.terminate()
        assert process.wait_exit(DEADLINE) == 0, process.log_text()


def api_of(project: Project) -> str | None:
    """Where the daemon's HTTP API listens, as it tells on its control socket (None: not yet)."""
    api: str | None = request_sync(control_path(project.state), {"op": "ping"})["api"]
    return api


def deliver(url: str, payload: dict[str, Any], *, event: str, delivery: str) -> httpx.Response:
    body = json.dumps(payload).encode()
    headers = {
        "Content-Type": "application/json",
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery,
        "X-Hub-Signature-256": sign_github(SECRET.encode(), body),
    }
    return httpx.post(url, content=body, headers=headers, timeout=DEADLINE)


# -- help ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["add", "list", "remove"])
def test_every_webhooks_command_has_a_summary_and_an_example(command: str) -> None:
    result = CliRunner().invoke(cli, ["webhooks", command, "--help"], prog_name="orchestrator")
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"Usage: orchestrator webhooks {command}")
    assert "Example:\n    orchestrator webhooks " in result.output


# -- without a daemon ----------------------------------------------------------------------------


def test_adding_prints_the_path_and_how_to_try_it_and_warns_about_a_missing_variable(
    project: Project,
) -> None:
    result = project.ok(
        "webhooks", "add", "retrain", "--dag", "train", "--secret-env", "RETRAIN_SECRET",
        "--event", "push", "--filter", "ref=refs/heads/main", "--conf", "sha=after",
    )  # fmt: skip
    lines = result.stdout.splitlines()
    assert lines[0] == "added webhook retrain: each delivery starts a run of train"
    assert lines[1] == "  POST /hooks/retrain  (http://127.0.0.1:8686/hooks/retrain)"
    assert 'openssl dgst -sha256 -hmac "$RETRAIN_SECRET"' in result.stdout
    assert "-H 'X-GitHub-Event: push'" in result.stdout
    assert '-H "X-Hub-Signature-256: sha256=$sig"' in result.stdout
    assert "does not pass the filters is answered 200" in result.stdout
    assert result.stderr.startswith("warning: RETRAIN_SECRET is not set in this shell")
    assert "The daemon reads it from its own environment" in result.stderr
    (listed,) = project.json("webhooks", "list")
    assert listed["filters"] == [["header.X-GitHub-Event", "push"], ["ref", "refs/heads/main"]]
    assert listed["conf_map"] == {"sha": "after"} and listed["kind"] == "github"
    assert (listed["secret_env"], listed["secret_file"], listed["rate"]) == (
        "RETRAIN_SECRET",
        None,
        None,
    )


def test_a_secret_file_is_checked_here_and_stored_as_an_absolute_path(
    project: Project,
) -> None:
    (project.root / "hook.secret").write_text("old\nnew\n")
    added = project.json(
        "webhooks", "add", "labels", "--dag", "train", "--secret-file", "hook.secret",
        "--kind", "hmac", "--signature-header", "X-Label-Signature", "--rate", "2.5",
    )  # fmt: skip
    assert added["via"] == "store" and added["path"] == "/hooks/labels"
    assert added["url"] == "http://127.0.0.1:8686/hooks/labels"
    webhook = added["webhook"]
    assert webhook["secret_file"] == str(project.root / "hook.secret")
    assert (webhook["signature_header"], webhook["delivery_header"]) == (
        "X-Label-Signature",
        "Idempotency-Key",
    )
    assert project.json("webhooks", "list") == [webhook]
    table = project.ok("webhooks", "list").stdout
    row = next(line for line in table.splitlines() if line.strip().startswith("labels"))
    assert row.split()[:5] == ["labels", "train", "hmac", "file", str(project.root / "hook.secret")]
    assert "2.5/s" in row and "old" not in table


def test_replace_and_remove(project: Project) -> None:
    args = ("webhooks", "add", "retrain", "--dag", "train", "--secret-env", "RETRAIN_SECRET")
    project.ok(*args)
    assert project.refused(*args).splitlines()[-1] == (
        "error: webhook retrain exists; remove it first or use --replace"
    )
    replaced = project.ok(*args, "--kind", "standard", "--replace")
    assert replaced.stdout.startswith("replaced webhook retrain")
    assert "webhook-signature" in replaced.stdout
    assert [hook["kind"] for hook in project.json("webhooks", "list")] == ["standard"]
    removed = project.ok("webhooks", "remove", "retrain")
    assert removed.stdout.strip() == (
        "removed webhook retrain: deliveries to POST /hooks/retrain are now refused"
    )
    assert project.json("webhooks", "list") == []
    assert project.refused("webhooks", "remove", "retrain") == (
        "error: there is no webhook 'retrain' (known: none yet); "
        "`orchestrator webhooks list` shows them"
    )


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--dag", "trian", "--secret-env", "S"], "error: no DAG with id 'trian'"),
        (["--dag", "train"], "error: webhook retrain needs exactly one secret source"),
        (
            ["--dag", "train", "--secret-env", "S", "--secret-file", "/s"],
            "error: webhook retrain needs exactly one secret source",
        ),
        (
            ["--dag", "train", "--secret-env", "S", "--kind", "hmac", "--event", "push"],
            "error: --event is for GitHub webhooks (kind github), not kind hmac",
        ),
        (
            ["--dag", "train", "--secret-env", "S", "--signature-header", "X-Sig"],
            "error: --signature-header is for --kind hmac",
        ),
        (
            ["--dag", "train", "--secret-env", "S", "--filter", "ref"],
            "error: --filter takes PATH=PATTERN, such as ref=refs/heads/main; got 'ref'",
        ),
        (
            ["--dag", "train", "--secret-env", "S", "--conf", "=after"],
            "error: --conf takes KEY=PATH",
        ),
        (
            ["--dag", "train", "--secret-env", "S", "--conf", "webhook=after"],
            "error: webhook retrain: 'webhook' cannot be a conf key",
        ),
        (
            ["--dag", "train", "--secret-env", "S", "--filter", "header.=x"],
            "error: webhook retrain: filter header.=x: 'header.' does not name a header",
        ),
        (
            ["--dag", "train", "--secret-env", "S", "--rate", "0"],
            "error: webhook retrain: --rate must be a number",
        ),
        (
            ["--dag", "train", "--secret-file", "missing.secret"],
            "error: webhook retrain: cannot read the secret file",
        ),
    ],
)
def test_bad_definitions_are_refused_before_anything_is_written(
    project: Project, options: list[str], message: str
) -> None:
    assert project.refused("webhooks", "add", "retrain", *options).startswith(message)
    assert not project.state.exists()


def test_a_bad_standard_secret_is_refused_without_quoting_it(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RETRAIN_SECRET", "whsec_%%not-base64%%")
    error = project.refused(
        "webhooks", "add", "retrain", "--dag", "train", "--kind", "standard",
        "--secret-env", "RETRAIN_SECRET",
    )  # fmt: skip
    assert error.startswith(
        "error: webhook retrain: the environment variable RETRAIN_SECRET is not a Standard "
        "Webhooks secret"
    )
    assert "not-base64" not in error
    assert not project.state.exists()


def test_listing_before_anything_exists_creates_nothing(project: Project) -> None:
    assert project.ok("webhooks", "list").stdout.strip() == (
        "No webhooks yet: add one with `orchestrator webhooks add NAME --dag DAG --secret-env VAR`."
    )
    assert project.json("webhooks", "list") == []
    assert "known: none yet" in project.refused("webhooks", "remove", "retrain")
    assert not (project.state / "orchestrator.db").exists()


# -- with a daemon -------------------------------------------------------------------------------


def test_through_the_daemon_a_webhook_serves_deliveries_at_once(project: Project) -> None:
    with daemon(project) as api_url:
        added = project.json(
            "webhooks", "add", "retrain", "--dag", "train", "--secret-env", "RETRAIN_SECRET",
            "--event", "push", "--conf", "sha=after",
        )  # fmt: skip
        assert added["via"] == "daemon" and added["url"] == f"{api_url}/hooks/retrain"
        url = added["url"]
        ignored = deliver(url, {"after": "abc"}, event="ping", delivery="d-0")
        assert ignored.status_code == 200, ignored.text
        assert "header.X-GitHub-Event is 'ping', not push" in ignored.text
        started = deliver(url, {"after": "abc"}, event="push", delivery="d-1")
        assert started.status_code == 201, started.text
        run_id = started.json()["run_id"]
        wait_until(
            lambda: project.json("runs", "show", run_id)["run"]["state"] == "success",
            DEADLINE,
            "the webhook's run to succeed",
        )
        conf = project.json("runs", "show", run_id)["run"]["conf"]
        assert conf == {"sha": "abc", "webhook": {"name": "retrain", "delivery_id": "d-1"}}
        missing = project.refused(
            "webhooks", "add", "other", "--dag", "train", "--secret-env", "OTHER_SECRET"
        )
        assert "OTHER_SECRET is not set in the daemon's environment" in missing
        assert "no DAG with id 'trian'" in project.refused(
            "webhooks", "add", "other", "--dag", "trian", "--secret-env", "RETRAIN_SECRET"
        )
        assert [hook["name"] for hook in project.json("webhooks", "list")] == ["retrain"]
        project.ok("webhooks", "remove", "retrain")
        gone = deliver(url, {"after": "abc"}, event="push", delivery="d-2")
        assert gone.status_code == 401  # refused as any unknown name is
    assert project.json("webhooks", "list") == []
    assert SECRET.encode() not in b"".join(
        path.read_bytes() for path in project.state.rglob("orchestrator.db*")
    )
