"""A daemon killed between an alert's commit and its send: after the restart it goes out once.

The task's failure and its alerts commit together (`alert_committed` is the crash point just
after that commit), so the receivers see nothing before the kill; the restarted daemon's
sender finds the alerts pending and delivers each exactly once: one Slack-format POST and
one email.
"""

from __future__ import annotations

import json
import signal
import textwrap
from pathlib import Path

import pytest
from alertkit import smtp_server
from crashkit import DaemonProcess, check_invariants, new_marker, wait_until
from httpserver import Reply, serve

from orchestrator.daemon.control import request_sync

pytestmark = pytest.mark.slow

DAG_FILE = """
from orchestrator import DAG, task


@task(in_process=True)
def load() -> None:
    raise RuntimeError("the upstream table is empty")


with DAG("nightly"):
    load()
"""
CONFIG = """
allow_private_urls = true

[alert_channels.ops]
kind = "slack"
url_env = "OPS_SLACK_URL"
min_interval = 0

[alert_channels.mail]
kind = "email"
host = "127.0.0.1"
port = {port}
sender = "orchestrator@example.com"
to = ["oncall@example.com"]

[[alerts]]
on = ["task_failed"]
channels = ["ops", "mail"]
"""


def test_alerts_committed_before_a_kill_are_sent_once_after_the_restart(tmp_path: Path) -> None:
    (tmp_path / "dags").mkdir()
    (tmp_path / "dags" / "nightly.py").write_text(textwrap.dedent(DAG_FILE))
    marker = new_marker()
    with serve() as http, smtp_server() as (mailbox, port):
        http.script("/slack", Reply.json({"ok": True}))
        (tmp_path / "orchestrator.toml").write_text(CONFIG.format(port=port))
        env = {
            "ORCHESTRATOR_CONFIG": str(tmp_path / "orchestrator.toml"),
            "ORCHESTRATOR_API_PORT": "0",
            "OPS_SLACK_URL": f"{http.url}/slack",
        }
        state = tmp_path / "state"
        with DaemonProcess(
            state, tmp_path / "dags", marker=marker, crash_at="alert_committed", env=env
        ) as daemon:
            daemon.wait_ready(60)
            request_sync(daemon.socket_path, {"op": "trigger", "dag_id": "nightly"})
            assert daemon.wait_exit(60) == -signal.SIGKILL, daemon.log_text()
        assert http.hits("/slack") == 0 and not mailbox.messages
        with DaemonProcess(state, tmp_path / "dags", marker=marker, env=env) as daemon:
            daemon.wait_ready(60)
            wait_until(lambda: http.hits("/slack") == 1 and mailbox.messages, 60, "the alerts")
            # A receiver has its message a moment before the sender marks it sent.
            wait_until(lambda: all_sent(daemon.socket_path), 60, "the alerts marked sent")
            listed = request_sync(daemon.socket_path, {"op": "alerts_list"})
            daemon.terminate()
            assert daemon.wait_exit(30) == 0, daemon.log_text()
        assert http.hits("/slack") == 1 and len(mailbox.messages) == 1
    failed = [a for a in listed["alerts"] if a["event"] == "task_failed"]
    assert sorted(a["channel"] for a in failed) == ["mail", "ops"]
    assert all(a["state"] == "sent" for a in failed)
    slack_text = json.loads(http.requests[0].body)["text"]
    assert "the upstream table is empty" in slack_text and "nightly" in slack_text
    assert "OPS_SLACK_URL" not in daemon.log_text() and http.url not in daemon.log_text()
    assert check_invariants(state / "orchestrator.db", settled=True) == []


CRASH_CONFIG = """
allow_private_urls = true

[alert_channels.ops]
kind = "slack"
url_env = "OPS_SLACK_URL"
min_interval = 0

[[alerts]]
on = ["daemon_started_after_crash"]
channels = ["ops"]
"""


def test_a_daemon_started_after_a_kill_alerts_once_and_a_clean_restart_does_not(
    tmp_path: Path,
) -> None:
    (tmp_path / "dags").mkdir()
    (tmp_path / "dags" / "nightly.py").write_text(textwrap.dedent(DAG_FILE))
    (tmp_path / "orchestrator.toml").write_text(CRASH_CONFIG)
    marker = new_marker()
    state = tmp_path / "state"
    with serve() as http:
        http.script("/slack", Reply.json({"ok": True}))
        env = {
            "ORCHESTRATOR_CONFIG": str(tmp_path / "orchestrator.toml"),
            "ORCHESTRATOR_API_PORT": "0",
            "OPS_SLACK_URL": f"{http.url}/slack",
        }
        with DaemonProcess(state, tmp_path / "dags", marker=marker, env=env) as daemon:
            daemon.wait_ready(60)
            daemon.kill9()
            assert daemon.wait_exit(30) == -signal.SIGKILL
        for _ in range(2):  # after the kill: one alert; after the clean stop: none
            with DaemonProcess(state, tmp_path / "dags", marker=marker, env=env) as daemon:
                daemon.wait_ready(60)
                wait_until(lambda: http.hits("/slack") == 1, 60, "the crash alert")
                wait_until(lambda: all_sent(daemon.socket_path), 60, "the alert marked sent")
                listed = request_sync(daemon.socket_path, {"op": "alerts_list"})
                daemon.terminate()
                assert daemon.wait_exit(30) == 0, daemon.log_text()
        assert http.hits("/slack") == 1
    crashes = [a for a in listed["alerts"] if a["event"] == "daemon_started_after_crash"]
    assert len(crashes) == 1 and crashes[0]["state"] == "sent"
    assert "daemon started after crash" in json.loads(http.requests[0].body)["text"]


def all_sent(socket_path: Path) -> bool:
    """True once every alert the daemon lists is marked sent."""
    alerts = request_sync(socket_path, {"op": "alerts_list"})["alerts"]
    return bool(alerts) and all(alert["state"] == "sent" for alert in alerts)
