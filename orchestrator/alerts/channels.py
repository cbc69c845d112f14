"""Channels: orchestrator.toml's `[alert_channels.NAME]` and DAG files' notifiers, as notifiers.

A DAG file's notifier travels through the outbox as its classpath and JSON fields; it is
rebuilt here, and only a `BaseNotifier` subclass is admitted (the classpath is data from the
store, so it must not be able to name any callable it likes).
"""

from __future__ import annotations

import hashlib
import importlib
import json
from collections.abc import Mapping
from typing import Any

from orchestrator.alertconfig import ChannelConfig
from orchestrator.alerts.email import EmailNotifier
from orchestrator.alerts.notifiers import (
    BaseNotifier,
    Notifier,
    NotifierError,
    SlackNotifier,
    WebhookNotifier,
)
from orchestrator.alerts.pagerduty import PagerDutyNotifier

_KINDS: dict[str, type[BaseNotifier]] = {
    "slack": SlackNotifier,
    "webhook": WebhookNotifier,
    "pagerduty": PagerDutyNotifier,
    "email": EmailNotifier,
}


def build_channel(config: ChannelConfig) -> BaseNotifier:
    """The notifier a configured channel stands for."""
    options = dict(config.options)
    if config.kind == "email":
        options["to"] = tuple([options["to"]] if isinstance(options["to"], str) else options["to"])
    return _KINDS[config.kind](**options)


def attached_notifiers(hooks: Any) -> list[BaseNotifier]:
    """The notifiers among a DAG's or task's `on_failure` (a callable, a notifier, or a list)."""
    if hooks is None:
        return []
    if isinstance(hooks, BaseNotifier) or not isinstance(hooks, list | tuple):
        hooks = [hooks]
    return [hook for hook in hooks if isinstance(hook, BaseNotifier)]


def attached_channel(dag_id: str, notifier: BaseNotifier) -> str:
    """The channel name of a DAG file's notifier: the same notifier groups as one channel."""
    digest = hashlib.sha256(notifier.serialize().encode()).hexdigest()[:10]
    return f"dag:{dag_id}:{notifier.kind}:{digest}"


def rebuild_notifier(text: str) -> Notifier:
    """A stored notifier, rebuilt; `NotifierError` for anything but a `BaseNotifier`."""
    try:
        document = json.loads(text)
        module_name, _, name = document["classpath"].rpartition(".")
        cls = getattr(importlib.import_module(module_name), name)
        kwargs = document["kwargs"]
    except (ValueError, KeyError, TypeError, ImportError, AttributeError) as error:
        raise NotifierError(f"a stored notifier cannot be rebuilt: {error}") from None
    if not (isinstance(cls, type) and issubclass(cls, BaseNotifier)):
        raise NotifierError(f"a stored notifier names {document['classpath']}, not a notifier")
    notifier: Notifier = cls(**_tuples(kwargs))
    return notifier


def _tuples(kwargs: Mapping[str, Any]) -> dict[str, Any]:
    return {key: tuple(item) if isinstance(item, list) else item for key, item in kwargs.items()}
