"""`orchestrator alerts list` and `alerts test` with no daemon: the store read-only, a real POST."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from httpserver import Reply, serve

from orchestrator.cli.app import cli


def config(tmp_path: Path, url_env: str = "CLI_SLACK_URL") -> list[str]:
    (tmp_path / "orchestrator.toml").write_text(
        f'allow_private_urls = true\n[alert_channels.ops]\nkind = "slack"\nurl_env = "{url_env}"\n'
    )
    return ["--state-dir", str(tmp_path / "state"), "--dags-folder", str(tmp_path)]


def test_alerts_test_posts_a_test_message(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    options = config(tmp_path)
    with serve() as http:
        http.script("/slack", Reply.json({"ok": True}))
        monkeypatch.setenv("CLI_SLACK_URL", f"{http.url}/slack")
        result = CliRunner().invoke(cli, ["alerts", "test", "ops", *options])
        assert result.exit_code == 0, result.output
        (seen,) = http.requests
    assert "A test message to channel ops" in json.loads(seen.body)["text"]
    assert seen.headers["X-Orchestrator-Alert-Id"] in result.output


def test_alerts_list_with_no_state_and_an_unknown_test_channel(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    options = config(tmp_path)
    listed = CliRunner().invoke(cli, ["alerts", "list", "--json", *options])
    assert listed.exit_code == 0, listed.output
    assert json.loads(listed.output)["alerts"] == []
    unknown = CliRunner().invoke(cli, ["alerts", "test", "nope", *options])
    assert unknown.exit_code != 0 and "no alert channel 'nope' (channels: ops)" in unknown.output
