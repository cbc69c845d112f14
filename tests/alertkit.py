"""Helpers for the alert tests (importable as `alertkit`): a loopback SMTP server, a sender."""

from __future__ import annotations

import socket
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from email import message_from_bytes
from email.message import Message
from typing import Any

import anyio
from aiosmtpd.controller import Controller

from orchestrator.alertconfig import AlertRule, ChannelConfig
from orchestrator.alerts.sender import AlertSender
from orchestrator.config import Settings
from orchestrator.policy import InputPolicy
from orchestrator.scheduling.engine import Engine
from orchestrator.scheduling.outbox import run_link
from orchestrator.store.alertrows import AlertRecord


class MailBox:
    """What the SMTP server received, as parsed messages."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.messages: list[Message] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self._lock:
            self.messages.append(message_from_bytes(envelope.content))
        return "250 OK"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def smtp_server() -> Iterator[tuple[MailBox, int]]:
    """aiosmtpd on 127.0.0.1 and a free port, for the `with` block."""
    box = MailBox()
    port = free_port()
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield box, port
    finally:
        controller.stop()


async def until(predicate: Callable[[], Any], what: str, limit: float = 20) -> Any:
    """Wait for a condition another thread makes true (a receiver's), under a deadline.

    A receiver runs in its own thread, with no event this loop could wait on: so poll.
    """
    try:
        with anyio.fail_after(limit):
            while not (value := predicate()):  # noqa: ASYNC110
                await anyio.sleep(0.01)
    except TimeoutError:
        raise AssertionError(f"timed out after {limit:g} s waiting for {what}") from None
    return value


def slack_settings(make_settings: Callable[..., Settings], *rules: AlertRule) -> Settings:
    """Settings with one Slack channel `ops` (its URL in $OPS_URL) and these rules."""
    channel = ChannelConfig("ops", "slack", {"url_env": "OPS_URL"}, min_interval=0)
    return make_settings(alert_channels={"ops": channel}, alerts=rules, allow_private_urls=True)


@asynccontextmanager
async def sending(engine: Engine, url: str) -> AsyncIterator[AlertSender]:
    """The daemon's sender for `engine`, delivering channel `ops` to `url`, for the block."""
    settings = engine.settings
    sender = AlertSender(
        engine.store,
        settings.alert_channels,
        clock=engine.clock,
        policy=InputPolicy.from_settings(settings),
        environ={"OPS_URL": url},
        link=run_link(settings),
    )
    engine.outbox.wake = sender.wake
    async with anyio.create_task_group() as group:
        await group.start(sender.run)
        yield sender
        group.cancel_scope.cancel()


async def alerts_of(engine: Engine, event: str) -> list[AlertRecord]:
    """The outbox's rows for `event`, oldest first."""
    return [
        alert for alert in reversed(await engine.store.list_alerts(1000)) if alert.event == event
    ]
