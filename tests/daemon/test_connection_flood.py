"""A daemon with few open files, flooded with idle and half-sent connections, keeps serving.

The daemon runs as a real process whose open-file limit is `NOFILE` (soft and hard, so it
cannot raise it). The test holds more connections than that, first to the API (half idle,
half slowloris: a request head begun and never finished), then to the control socket, which
runs the daemon out of open files outright. Throughout, the daemon must stay up; after each,
`/api/v1/health`, the CLI and scheduling must work; the log must say what happened in a
few lines, not hundreds of thousands; and SIGTERM must still stop it cleanly.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from clikit import CliCalls
from crashkit import DaemonProcess, new_marker, ping, wait_until

from orchestrator.daemon.control import control_path, request_sync

DAGS = """
from orchestrator import DAG, task


@task
def hello() -> int:
    return 1


with DAG("hello"):
    hello()
"""
NOFILE = 256
FLOOD = 300  # more connections than the daemon may have open files
DEADLINE = 30.0
SLOW_HEAD = b"GET /api/v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: "


@dataclass(frozen=True)
class Project(CliCalls):
    dags: Path
    state: Path


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Project:
    for name in list(os.environ):
        if name.startswith("ORCHESTRATOR_"):
            monkeypatch.delenv(name)
    project = Project(dags=tmp_path / "dags", state=tmp_path / "state")
    project.dags.mkdir()
    (project.dags / "hello.py").write_text(DAGS)
    return project


@contextmanager
def api_flood(address: tuple[str, int], count: int) -> Iterator[None]:
    """`count` connections to the API, every other one with half a request head sent."""
    with ExitStack() as stack:
        for number in range(count):
            client = stack.enter_context(socket.create_connection(address, timeout=DEADLINE))
            if number % 2:
                client.sendall(SLOW_HEAD)
        yield


@contextmanager
def control_flood(path: Path, count: int) -> Iterator[None]:
    """`count` idle connections to the control socket."""
    with ExitStack() as stack:
        for _ in range(count):
            client = stack.enter_context(socket.socket(socket.AF_UNIX, socket.SOCK_STREAM))
            client.settimeout(DEADLINE)
            client.connect(str(path))
        yield


def health(url: str) -> int | str:
    """The health check's status, the code of a refusal, or "refused" if the connection was."""
    try:
        answer = httpx.get(f"{url}/api/v1/health", timeout=DEADLINE)
    except httpx.TransportError:
        return "refused"
    if answer.status_code == 503:
        code: str = answer.json()["error"]["code"]
        return code
    return answer.status_code


def healthy(url: str, seen: set[int | str]) -> bool:
    seen.add(status := health(url))
    return status == 200


def run_to_success(project: Project) -> None:
    """Trigger a run through the daemon (the CLI's control socket) and wait for it to succeed."""
    triggered: dict[str, Any] = project.json("trigger", "hello")
    assert triggered["via"] == "daemon", triggered

    def state() -> bool:
        shown = project.json("runs", "show", triggered["run_id"])
        return bool(shown["run"]["state"] == "success")

    wait_until(state, DEADLINE, "the triggered run to succeed")


def api_address(project: Project) -> tuple[str, str, int]:
    url = wait_until(
        lambda: request_sync(control_path(project.state), {"op": "ping"})["api"],
        DEADLINE,
        "the daemon's API to listen",
    )
    host, port = url.removeprefix("http://").rsplit(":", 1)
    return url, host, int(port)


def resource_lines(log: str) -> list[str]:
    words = ("open files", "out of system resource", "api_max_connections", "Too many open")
    return [line for line in log.splitlines() if any(word in line for word in words)]


def test_a_flood_of_idle_and_slow_connections_leaves_the_daemon_serving(project: Project) -> None:
    environment = {"ORCHESTRATOR_API_PORT": "0", "ORCHESTRATOR_API_HEADER_TIMEOUT": "1"}
    with DaemonProcess(
        project.state, project.dags, marker=new_marker(), env=environment, nofile=NOFILE
    ) as daemon:
        daemon.wait_ready(DEADLINE)
        url, host, port = api_address(project)

        seen: set[int | str] = set()
        with api_flood((host, port), FLOOD):
            # Connections beyond the cap are refused at once; those within it time out.
            wait_until(lambda: healthy(url, seen), DEADLINE, "the health check to answer")
            run_to_success(project)
        assert seen <= {200, "too_many_connections", "refused"}, seen

        with control_flood(daemon.socket_path, FLOOD):
            wait_until(
                lambda: "control socket is out of open files" in daemon.log_text(),
                DEADLINE,
                "the daemon to run out of open files",
            )
            late = socket.create_connection((host, port), timeout=DEADLINE)
            late.sendall(b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            wait_until(
                lambda: "API is out of open files" in daemon.log_text(),
                DEADLINE,
                "the API to run out of open files",
            )
            assert daemon.process.poll() is None, daemon.log_text()
        with late:  # it waited in the backlog, and is answered now
            assert late.makefile("rb").readline().startswith(b"HTTP/1.1 200 "), daemon

        assert ping(daemon.socket_path, timeout=DEADLINE)
        assert health(url) == 200
        run_to_success(project)
        assert daemon.process.poll() is None, daemon.log_text()
        daemon.terminate()
        assert daemon.wait_exit(DEADLINE) == 0, daemon.log_text()
    lines = resource_lines(daemon.log_text())
    assert 2 <= len(lines) <= 10, "\n".join(lines[:50])
