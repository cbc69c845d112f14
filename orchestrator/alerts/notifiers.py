"""Notifiers: what an alert is, the `Notifier` protocol, and the HTTP built-ins.

A notifier is a frozen dataclass of JSON-safe fields, like a trigger: one attached in a DAG
file is stored with its alert as classpath and kwargs, and rebuilt by the sender, perhaps
after a restart. Its fields name where a secret is (`url_env`, `url_file`), never the secret:
the store and the logs see only the variable's or the file's name.

Every delivery carries the alert's id so that a receiver can drop a repeat (an alert sent
just before a `kill -9` and sent again after the restart): Slack's text and an
`X-Orchestrator-Alert-Id` (and `Idempotency-Key`) header, Standard Webhooks' `webhook-id`.
"""

from __future__ import annotations

import contextvars
import dataclasses
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

import anyio

from orchestrator.errors import OrchestratorError, PolicyError
from orchestrator.policy import InputPolicy, policy_checked_client
from orchestrator.signing import decode_standard_secret, sign_standard

if TYPE_CHECKING:  # httpx is imported where a notifier sends: the engine's start-up skips it
    import httpx

_LISTED = 100  # alerts of a group named one by one (a group holds at most 100: all)


class NotifierError(OrchestratorError):
    """A delivery failed: a secret is missing, the policy refused the URL, the receiver said no."""


@dataclass(frozen=True, kw_only=True)
class Alert:
    """One message to send: an alert, or a group of them (`grouped`) when they come in a storm."""

    alert_id: str
    event: str
    at: float
    action: str = "trigger"  # trigger | resolve
    dag_id: str | None = None
    run_id: str | None = None
    task_id: str | None = None
    try_number: int | None = None
    summary: str = ""  # the error's last lines
    link: str | None = None  # the run's page in the UI
    grouped: tuple[Alert, ...] = ()

    @property
    def members(self) -> tuple[Alert, ...]:
        """The alerts this message stands for: the group's, or itself."""
        return self.grouped or (self,)

    def title(self) -> str:
        if self.grouped:
            return f"[orchestrator] {len(self.grouped)} alerts: {_count_events(self.grouped)}"
        what = "resolved" if self.action == "resolve" else self.event.replace("_", " ")
        where = " ".join(
            part
            for part in (
                f"DAG {self.dag_id}" if self.dag_id else "",
                f"task {self.task_id}" if self.task_id else "",
                f"try {self.try_number}" if self.try_number else "",
            )
            if part
        )
        return f"[orchestrator] {what}: {where}".rstrip(": ")

    def text(self) -> str:
        """Plain text naming the DAG, task, run, try, the error's last lines and the run's page."""
        if self.grouped:
            lines = [self.title()]
            lines += [f"- {alert.line()}" for alert in self.grouped[:_LISTED]]
            if len(self.grouped) > _LISTED:
                lines.append(f"... and {len(self.grouped) - _LISTED} more")
            return "\n".join(lines)
        lines = [self.title()]
        if self.run_id:
            lines.append(f"run: {self.run_id}")
        if self.summary:
            lines += ["", self.summary, ""]
        if self.link:
            lines.append(self.link)
        lines.append(f"alert id: {self.alert_id}")
        return "\n".join(lines)

    def line(self) -> str:
        """One line for a group's list."""
        parts = [self.title().removeprefix("[orchestrator] ")]
        if self.run_id:
            parts.append(f"run {self.run_id}")
        if self.link:
            parts.append(self.link)
        return f"{', '.join(parts)} (alert id {self.alert_id})"

    def as_json(self) -> dict[str, Any]:
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        fields["grouped"] = [alert.as_json() for alert in self.grouped]
        return fields


def _count_events(alerts: tuple[Alert, ...]) -> str:
    counts: dict[str, int] = {}
    for alert in alerts:
        counts[alert.event] = counts.get(alert.event, 0) + 1
    return ", ".join(f"{event} x{count}" for event, count in counts.items())


@runtime_checkable
class Notifier(Protocol):
    """Anything that can deliver an alert; raise to have the sender try again later."""

    async def notify(self, alert: Alert) -> None: ...


@dataclass(frozen=True)
class Delivery:
    """What the sender gives notifiers: the URL policy, the environment, per-attempt timeout."""

    policy: InputPolicy = field(default_factory=InputPolicy)
    environ: Mapping[str, str] = field(default_factory=dict)
    timeout: float = 10.0


_delivery: contextvars.ContextVar[Delivery] = contextvars.ContextVar("alert_delivery")


def current_delivery() -> Delivery:
    """The sender's `Delivery`, or a strict one (public URLs only, no environment)."""
    return _delivery.get(Delivery())


def set_delivery(delivery: Delivery) -> None:
    """Set the `Delivery` for this task and the tasks it starts (the sender calls this)."""
    _delivery.set(delivery)


@dataclass(frozen=True, kw_only=True)
class BaseNotifier:
    """Base of the built-ins: a notifier is a value, stored as its classpath and fields."""

    kind: ClassVar[str] = "notifier"

    async def notify(self, alert: Alert) -> None:
        raise NotImplementedError

    def serialize(self) -> str:
        """Classpath and fields as JSON; they hold where secrets are, never secrets."""
        cls = type(self)
        kwargs = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return json.dumps({"classpath": f"{cls.__module__}.{cls.__qualname__}", "kwargs": kwargs})

    def __call__(self, context: Any) -> None:
        """Airflow calls its notifiers; ours are sent from the outbox, so a call does nothing."""


def redact(text: str, url: str) -> str:
    """`text` without the URL (a Slack webhook URL is its own password) or its path."""
    import httpx

    parsed = httpx.URL(url)
    for secret in (url, str(parsed.copy_with(query=None)), parsed.raw_path.decode("ascii")):
        if len(secret) > 1:
            text = text.replace(secret, "<the channel's URL>")
    return text


def read_secret(env: str | None, file: str | None, what: str) -> str:
    """The secret from the environment variable or file named; `NotifierError` if absent."""
    if env:
        value = current_delivery().environ.get(env, "")
        if not value.strip():
            raise NotifierError(f"{what}: the environment variable {env} is not set")
        return value.strip()
    if file:
        try:
            with open(file, encoding="utf-8") as handle:
                lines = [line.strip() for line in handle.read(65536).splitlines() if line.strip()]
        except OSError as error:
            raise NotifierError(f"{what}: cannot read {file}: {error.strerror}") from None
        if not lines:
            raise NotifierError(f"{what}: the file {file} holds no secret")
        return lines[0]
    raise NotifierError(f"{what} needs an environment variable or a file to read it from")


async def read_secret_off_loop(env: str | None, file: str | None, what: str) -> str:
    if file and not env:  # a file on a hung mount must not block the loop
        delivery = current_delivery()
        context = contextvars.copy_context()
        context.run(set_delivery, delivery)
        return await anyio.to_thread.run_sync(context.run, read_secret, env, file, what)
    return read_secret(env, file, what)


async def post_json(url: str, body: bytes, headers: Mapping[str, str], what: str) -> httpx.Response:
    """POST through the input policy's client; a non-2xx answer is a `NotifierError`."""
    import httpx

    delivery = current_delivery()
    all_headers = {"Content-Type": "application/json", **headers}
    async with policy_checked_client(delivery.policy, timeout=delivery.timeout) as client:
        try:
            response = await client.post(url, content=body, headers=all_headers)
        except (httpx.HTTPError, PolicyError) as error:
            message = redact(f"{type(error).__name__}: {error}", url)
            raise NotifierError(f"{what}: {message}") from None
    if not response.is_success:
        raise NotifierError(f"{what}: the receiver answered {response.status_code}")
    return response


@dataclass(frozen=True, kw_only=True)
class SlackNotifier(BaseNotifier):
    """Slack incoming webhook (also Mattermost, Rocket.Chat): `{"text": ...}` with the alert."""

    kind: ClassVar[str] = "slack"
    url_env: str | None = None
    url_file: str | None = None

    async def notify(self, alert: Alert) -> None:
        url = await read_secret_off_loop(self.url_env, self.url_file, "the Slack webhook URL")
        body = {
            "text": alert.text(),
            "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": alert.text()}}],
        }
        headers = {"X-Orchestrator-Alert-Id": alert.alert_id, "Idempotency-Key": alert.alert_id}
        await post_json(url, json.dumps(body).encode(), headers, "Slack")


@dataclass(frozen=True, kw_only=True)
class WebhookNotifier(BaseNotifier):
    """A generic webhook: the alert as JSON, signed with Standard Webhooks headers."""

    kind: ClassVar[str] = "webhook"
    url_env: str | None = None
    url_file: str | None = None
    secret_env: str | None = None
    secret_file: str | None = None

    async def notify(self, alert: Alert) -> None:
        url = await read_secret_off_loop(self.url_env, self.url_file, "the webhook URL")
        body = json.dumps({"type": "orchestrator.alert", "data": alert.as_json()}).encode()
        headers = {"webhook-id": alert.alert_id, "webhook-timestamp": str(int(time.time()))}
        if self.secret_env or self.secret_file:
            secret = await read_secret_off_loop(
                self.secret_env, self.secret_file, "the webhook secret"
            )
            try:
                key = decode_standard_secret(secret)
            except ValueError as error:
                raise NotifierError(str(error)) from None
            timestamp = int(headers["webhook-timestamp"])
            headers["webhook-signature"] = sign_standard(key, alert.alert_id, timestamp, body)
        await post_json(url, body, headers, "webhook")
