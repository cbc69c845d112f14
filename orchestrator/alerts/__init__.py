"""Alerts: notifiers, the rules that turn state changes into alerts, and the outbox's sender.

`notifiers` (with `pagerduty` and `email`) are the channels: frozen values with an
`async def notify(alert)`, attachable in a DAG file (`DAG(on_failure=[SlackNotifier(...)])`)
or configured in orchestrator.toml (`channels`). `rules` turns a step's committed changes into
outbox rows in the same transaction; `sender` delivers them after the commit, with retries,
backoff, a timeout per attempt and a rate limit per channel that groups a storm.

Imports: the core modules, `store` and `authoring`.
"""

from orchestrator.alerts.email import EmailNotifier
from orchestrator.alerts.notifiers import (
    Alert,
    BaseNotifier,
    Notifier,
    SlackNotifier,
    WebhookNotifier,
)
from orchestrator.alerts.pagerduty import PagerDutyNotifier

__all__ = (
    "Alert",
    "BaseNotifier",
    "EmailNotifier",
    "Notifier",
    "PagerDutyNotifier",
    "SlackNotifier",
    "WebhookNotifier",
)
