"""`orchestrator tokens`: create, list and revoke, in the store alone and through a daemon.

Commands run in-process with click's CliRunner; the daemon is a real subprocess
(`crashkit.DaemonProcess`) with its HTTP API on a free port, so a token made through it is
tried on the API itself.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from clikit import CliCalls
from crashkit import DaemonProcess, new_marker, wait_until

from orchestrator.cli import cli
from orchestrator.cli.tokens import parse_expires
from orchestrator.daemon.control import control_path, request_sync
from orchestrator.errors import RunError

DAGS = """
from orchestrator.authoring.dag import DAG

with DAG("train"):
    pass
"""
DEADLINE = 30.0


@dataclass(frozen=True)
class Project(CliCalls):
    dags: Path
    state: Path

    def database_bytes(self) -> bytes:
        return b"".join(path.read_bytes() for path in self.state.rglob("orchestrator.db*"))


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Project:
    """A DAGs folder with one DAG, a state directory not yet made, no ORCHESTRATOR_* set."""
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith("ORCHESTRATOR_"):
            monkeypatch.delenv(name)
    project = Project(dags=tmp_path / "dags", state=tmp_path / "state")
    project.dags.mkdir()
    (project.dags / "pipelines.py").write_text(DAGS)
    return project


@contextmanager
def daemon(project: Project) -> Iterator[str]:
    """A daemon on the project, its API on a free port; yields the API's URL."""
    environment = {"ORCHESTRATOR_API_PORT": "0"}
    with DaemonProcess(
        project.state, project.dags, marker=new_marker(), env=environment
    ) as process:
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


def get_dags(api_url: str, token: str) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"}
    return httpx.get(f"{api_url}/api/v1/dags", headers=headers, timeout=DEADLINE)


# -- help and parsing ----------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["create", "list", "revoke"])
def test_every_tokens_command_has_a_summary_and_an_example(command: str) -> None:
    result = CliRunner().invoke(cli, ["tokens", command, "--help"], prog_name="orchestrator")
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"Usage: orchestrator tokens {command}")
    assert "Example:\n    orchestrator tokens " in result.output


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30d", 30 * 86400), ("12h", 43200), ("90m", 5400), ("1D", 86400), ("never", None)],
)
def test_expiry_durations(text: str, seconds: int | None) -> None:
    assert parse_expires(text) == seconds


@pytest.mark.parametrize("text", ["0d", "30", "2w", "-1h", "1.5h", "soon", ""])
def test_bad_expiry_durations_say_what_is_accepted(text: str) -> None:
    with pytest.raises(RunError) as caught:
        parse_expires(text)
    assert str(caught.value) == (
        f"--expires must be a duration such as 30d, 12h or 90m, or never; got {text!r}"
    )


# -- without a daemon ----------------------------------------------------------------------------


def test_a_token_is_printed_once_and_only_its_hash_is_stored(project: Project) -> None:
    result = project.ok("tokens", "create", "--scope", "trigger", "--name", "ci")
    lines = result.stdout.splitlines()
    token_id = lines[0].split()[2]
    assert lines[0].startswith(f"created token {token_id} (scope trigger, name ci, expires never)")
    token = lines[2].strip()
    assert token.startswith(f"orch_{token_id}_") and len(token) == 61
    assert "It is shown only now and cannot be shown again" in result.stdout
    assert f"`orchestrator tokens revoke {token_id}`" in result.stdout
    assert token.encode() not in project.database_bytes()
    assert token[18:].encode() not in project.database_bytes()
    listing = project.ok("tokens", "list").stdout
    assert token[18:] not in listing
    row = next(line for line in listing.splitlines() if token_id in line)
    assert row.split()[:3] == [token_id, "ci", "trigger"]
    assert row.split()[-2:] == ["never", "active"]


def test_json_output_for_scripts(project: Project) -> None:
    created = project.json("tokens", "create", "--scope", "read", "--expires", "12h")
    assert created["via"] == "store" and created["scope"] == "read" and created["name"] == ""
    assert created["expires_at"] == pytest.approx(created["created_at"] + 43200)
    (listed,) = project.json("tokens", "list")
    expected = {k: v for k, v in created.items() if k not in ("token", "via")}
    assert listed == expected and "secret_hash" not in listed


def test_revoking_marks_the_token_and_a_second_revoke_changes_nothing(project: Project) -> None:
    created = project.json("tokens", "create", "--scope", "admin", "--name", "ops")
    token_id = created["token_id"]
    revoked = project.ok("tokens", "revoke", token_id)
    assert revoked.stdout.strip() == (
        f"revoked token {token_id} (ops): requests sending it are refused"
    )
    (first,) = project.json("tokens", "list")
    project.ok("tokens", "revoke", token_id)
    (again,) = project.json("tokens", "list")
    assert first["revoked_at"] is not None and again == first
    row = next(
        line for line in project.ok("tokens", "list").stdout.splitlines() if token_id in line
    )
    assert "revoked" in row


def test_revoking_an_unknown_token_lists_the_known_ids(project: Project) -> None:
    created = project.json("tokens", "create", "--scope", "read")
    result = project.invoke("tokens", "revoke", "feedfacecafe")
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        f"error: there is no API token with id 'feedfacecafe' (known ids: {created['token_id']}); "
        "`orchestrator tokens list` shows them"
    )


def test_bad_input_is_refused_before_anything_is_written(project: Project) -> None:
    no_scope = project.invoke("tokens", "create")
    assert no_scope.exit_code == 2 and "Missing option '--scope'" in no_scope.stderr
    bad_scope = project.invoke("tokens", "create", "--scope", "root")
    assert bad_scope.exit_code == 2 and "'root' is not one of 'read', 'trigger', 'admin'" in (
        bad_scope.stderr
    )
    bad_expiry = project.invoke("tokens", "create", "--scope", "read", "--expires", "soon")
    assert bad_expiry.exit_code == 2
    assert bad_expiry.stderr.startswith("error: --expires must be a duration such as 30d")
    bad_name = project.invoke("tokens", "create", "--scope", "read", "--name", "a\nb")
    assert bad_name.exit_code == 2 and "on one line" in bad_name.stderr
    assert not project.state.exists()


def test_listing_before_anything_exists_creates_nothing(project: Project) -> None:
    assert project.ok("tokens", "list").stdout.strip() == (
        "No API tokens yet: create one with `orchestrator tokens create --scope read`."
    )
    assert project.json("tokens", "list") == []
    revoke = project.invoke("tokens", "revoke", "feedfacecafe")
    assert revoke.exit_code == 2 and "known ids: none yet" in revoke.stderr
    assert not (project.state / "orchestrator.db").exists()


# -- with a daemon -------------------------------------------------------------------------------


def test_through_the_daemon_tokens_work_on_the_api_at_once(project: Project) -> None:
    before = project.json("tokens", "create", "--scope", "read", "--name", "early")
    with daemon(project) as api_url:
        assert get_dags(api_url, before["token"]).status_code == 200  # loaded at start
        created = project.json("tokens", "create", "--scope", "trigger", "--name", "ci")
        assert created["via"] == "daemon"
        answer = get_dags(api_url, created["token"])
        assert answer.status_code == 200, answer.text
        listed = project.json("tokens", "list")
        assert [token["token_id"] for token in listed] == [
            before["token_id"],
            created["token_id"],
        ]
        project.ok("tokens", "revoke", created["token_id"])
        refused = get_dags(api_url, created["token"])
        assert refused.status_code == 401
        assert created["token"] not in refused.text
        unknown = project.invoke("tokens", "revoke", "feedfacecafe")
        assert unknown.exit_code == 2 and "no API token with id 'feedfacecafe'" in unknown.stderr
    assert created["token"][18:].encode() not in project.database_bytes()
    (_, stored) = project.json("tokens", "list")
    assert stored["revoked_at"] is not None  # the daemon wrote it to the store
