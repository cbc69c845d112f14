"""Helpers for the alert tests (importable as `alertkit`): a loopback SMTP server, waiting."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from email import message_from_bytes
from email.message import Message
from typing import Any

import anyio
from aiosmtpd.controller import Controller


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
