"""Email over SMTP with the standard library, in a worker thread: no new dependency.

The Message-ID is derived from the alert id (`<alert-id@orchestrator>`), so a mail sent again
after a crash is the same message to any client that threads or dedups by it.
"""

from __future__ import annotations

import smtplib
import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from typing import ClassVar

import anyio

from orchestrator.alerts.notifiers import (
    Alert,
    BaseNotifier,
    NotifierError,
    current_delivery,
    read_secret_off_loop,
)


@dataclass(frozen=True, kw_only=True)
class EmailNotifier(BaseNotifier):
    """Send the alert as a plain-text mail; STARTTLS and login when configured."""

    kind: ClassVar[str] = "email"
    host: str
    sender: str
    to: tuple[str, ...] | list[str]
    port: int = 25
    starttls: bool = False
    username: str | None = None
    password_env: str | None = None
    password_file: str | None = None

    async def notify(self, alert: Alert) -> None:
        password = None
        if self.username:
            password = await read_secret_off_loop(
                self.password_env, self.password_file, "the SMTP password"
            )
        message = self.message(alert)
        timeout = current_delivery().timeout
        # Abandoned on cancel: a hung server costs a thread until its socket timeout, never
        # the event loop or the sender's other channels.
        await anyio.to_thread.run_sync(
            self._send, message, password, timeout, abandon_on_cancel=True
        )

    def message(self, alert: Alert) -> EmailMessage:
        message = EmailMessage()
        message["Subject"] = alert.title()
        message["From"] = self.sender
        message["To"] = ", ".join(self.to)
        message["Message-ID"] = f"<{alert.alert_id}@orchestrator>"
        message["X-Orchestrator-Alert-Id"] = alert.alert_id
        message.set_content(alert.text())
        return message

    def _send(self, message: EmailMessage, password: str | None, timeout: float) -> None:
        try:
            with smtplib.SMTP(self.host, self.port, timeout=timeout) as smtp:
                if self.starttls:
                    smtp.starttls(context=ssl.create_default_context())
                if self.username and password is not None:
                    smtp.login(self.username, password)
                smtp.send_message(message)
        except (OSError, smtplib.SMTPException) as error:
            raise NotifierError(f"email via {self.host}:{self.port}: {error}") from None
