"""The alerts part of orchestrator.toml: channels, and rules that send events to them.

```toml
[alert_channels.ops]
kind = "slack"                   # slack | webhook | pagerduty | email
url_env = "SLACK_WEBHOOK_URL"    # secrets come from the environment or a file, never the file

[[alerts]]
on = ["task_failed", "run_failed"]
dags = ["retrain*"]              # globs; leave out for every DAG
channels = ["ops"]

[[alerts]]                       # proactive: something that should have happened did not
on = ["run_late", "trigger_silent", "run_too_long"]
late_after = 600                 # a scheduled run not started 10 minutes after its tick
silent_for = 3600                # a run trigger that has not fired for an hour
max_duration = 7200              # a run still going after two hours
channels = ["ops"]
```

Only the standard library: settings are read at the start of every CLI command. A bad entry
is a `ConfigError` naming the entry and, for `[[alerts]]`, its line in the file.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from orchestrator.errors import ConfigError

#: Every event a rule may name, and when it happens.
EVENTS: dict[str, str] = {
    "task_failed": "a task instance failed (its retries used up)",
    "run_failed": "a run failed",
    "sensor_timeout": "a deferred task's trigger passed its timeout (also a task_failed)",
    "trigger_error": "a DAG's run trigger stopped with an error (data may stop arriving)",
    "daemon_started_after_crash": "the daemon started after one that did not stop cleanly",
    "run_late": "a scheduled run has not started `late_after` seconds after its tick",
    "trigger_silent": "a DAG's run trigger has not fired for `silent_for` seconds",
    "run_too_long": "a run is still going `max_duration` seconds after it started",
}
#: The proactive events, each with the threshold (seconds) its rule must give.
THRESHOLDS: dict[str, str] = {
    "run_late": "late_after",
    "trigger_silent": "silent_for",
    "run_too_long": "max_duration",
}
_RULE_KEYS = ("on", "channels", "dags", *THRESHOLDS.values())
#: What each kind of channel needs besides `kind`, and what it may have.
CHANNEL_KINDS: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    "slack": (frozenset(), frozenset({"url_env", "url_file"})),
    "webhook": (frozenset(), frozenset({"url_env", "url_file", "secret_env", "secret_file"})),
    "pagerduty": (
        frozenset(),
        frozenset({"routing_key_env", "routing_key_file", "url", "severity"}),
    ),
    "email": (
        frozenset({"host", "sender", "to"}),
        frozenset({"port", "starttls", "username", "password_env", "password_file"}),
    ),
}
_COMMON = frozenset({"kind", "timeout", "min_interval"})
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


@dataclass(frozen=True)
class ChannelConfig:
    """One `[alert_channels.NAME]` table: a kind and its options (secret *sources* only)."""

    name: str
    kind: str
    options: Mapping[str, Any] = field(default_factory=dict, hash=False)
    timeout: float = 10.0  # seconds one delivery attempt may take
    min_interval: float = 1.0  # seconds between two messages: a storm becomes a few groups


@dataclass(frozen=True)
class AlertRule:
    """One `[[alerts]]` entry: which events of which DAGs go to which channels."""

    on: tuple[str, ...]
    channels: tuple[str, ...]
    dags: tuple[str, ...] = ()  # fnmatch globs; empty: every DAG
    late_after: float | None = None  # seconds, for `run_late`
    silent_for: float | None = None  # seconds, for `trigger_silent`
    max_duration: float | None = None  # seconds, for `run_too_long`

    def threshold(self, event: str) -> float | None:
        """The seconds a proactive `event` waits before it alerts (None: not one of them)."""
        key = THRESHOLDS.get(event)
        return None if key is None else getattr(self, key)


def check_channels(value: Any, label: Any) -> dict[str, ChannelConfig]:
    """`[alert_channels.NAME]` tables as `ChannelConfig`s, or a `ConfigError`."""
    if not isinstance(value, Mapping):
        raise ConfigError(f"{label('alert_channels')} must be a table of channels by name")
    return {name: _channel(name, table, label) for name, table in value.items()}


def _channel(name: str, table: Any, label: Any) -> ChannelConfig:
    if isinstance(table, ChannelConfig):
        return table
    where = label(f"alert_channels.{name}")
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ConfigError(f"{where}: a channel name is 1 to 64 letters, digits, '_', '.', '-'")
    if not isinstance(table, Mapping) or table.get("kind") not in CHANNEL_KINDS:
        kinds = ", ".join(CHANNEL_KINDS)
        raise ConfigError(f"{where} needs `kind`, one of {kinds}")
    kind = table["kind"]
    required, optional = CHANNEL_KINDS[kind]
    for key in table:
        if key not in required | optional | _COMMON:
            known = ", ".join(sorted(required | optional | _COMMON))
            raise ConfigError(f"{where}: unknown key `{key}` for a {kind} channel; known: {known}")
    for key in sorted(required - set(table)):
        raise ConfigError(f"{where}: a {kind} channel needs `{key}`")
    if kind in ("slack", "webhook") and ("url_env" in table) == ("url_file" in table):
        raise ConfigError(f"{where} needs exactly one of `url_env` or `url_file`")
    options = {key: item for key, item in table.items() if key not in _COMMON}
    timeout = _seconds(table.get("timeout", 10.0), f"{where}: `timeout`", least=0.001)
    interval = _seconds(table.get("min_interval", 1.0), f"{where}: `min_interval`", least=0.0)
    return ChannelConfig(name, kind, options, timeout=timeout, min_interval=interval)


def _seconds(value: Any, where: str, *, least: float) -> float:
    if not isinstance(value, int | float) or isinstance(value, bool) or not least <= value < 1e6:
        raise ConfigError(f"{where} must be a number of seconds from {least:g}, got {value!r}")
    return float(value)


def check_rules(value: Any, label: Any) -> tuple[AlertRule, ...]:
    """`[[alerts]]` entries as `AlertRule`s; each error names its entry (`alerts[N]`)."""
    if not isinstance(value, list | tuple):
        raise ConfigError(f"{label('alerts')} must be a list of tables: write [[alerts]]")
    return tuple(_rule(entry, label(f"alerts[{index}]")) for index, entry in enumerate(value))


def _rule(entry: Any, where: str) -> AlertRule:
    if isinstance(entry, AlertRule):
        return entry
    if not isinstance(entry, Mapping):
        raise ConfigError(f"{where} must be a table with `on` and `channels`")
    for key in entry:
        if key not in _RULE_KEYS:
            raise ConfigError(f"{where}: unknown key `{key}`; known: {', '.join(_RULE_KEYS)}")
    on = _names(entry.get("on"), where, "on")
    for event in on:
        if event not in EVENTS:
            raise ConfigError(
                f"{where}: unknown event {event!r}; the events are: {', '.join(EVENTS)}"
            )
    channels = _names(entry.get("channels"), where, "channels")
    dags = _names(entry.get("dags", []), where, "dags", empty=True)
    thresholds = _thresholds(entry, on, where)
    return AlertRule(on=on, channels=channels, dags=dags, **thresholds)


def _thresholds(entry: Mapping[str, Any], on: tuple[str, ...], where: str) -> dict[str, float]:
    """Each proactive event needs its threshold, and a threshold needs its event."""
    thresholds: dict[str, float] = {}
    for event, key in THRESHOLDS.items():
        if event in on and key not in entry:
            raise ConfigError(f"{where}: `{event}` needs `{key}` (seconds), say {key} = 600")
        if key in entry and event not in on:
            raise ConfigError(f"{where}: `{key}` is read only for `{event}`; add it to `on`")
        if key in entry:
            thresholds[key] = _seconds(entry[key], f"{where}: `{key}`", least=1.0)
    return thresholds


def _names(value: Any, where: str, key: str, *, empty: bool = False) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(f"{where}: `{key}` must be a list of names, got {value!r}")
    if not value and not empty:
        raise ConfigError(f"{where}: `{key}` needs at least one name")
    return tuple(value)


def check_rule_channels(
    rules: tuple[AlertRule, ...], channels: Mapping[str, Any], label: Any
) -> None:
    """Every channel a rule names must be defined: a typo must not drop alerts silently."""
    for index, rule in enumerate(rules):
        for name in rule.channels:
            if name not in channels:
                known = ", ".join(sorted(channels)) or "none defined"
                raise ConfigError(
                    f"{label(f'alerts[{index}]')} sends to unknown channel {name!r} "
                    f"(channels: {known}); "
                    f"define it as [alert_channels.{name}]"
                )


def entry_line(text: str, table: str, index: int) -> int | None:
    """The line (from 1) of the `index`-th `[[table]]` header in TOML `text`, if found."""
    header = re.compile(rf"^[ \t]*\[\[[ \t]*{re.escape(table)}[ \t]*\]\]", re.MULTILINE)
    starts = [match.start() for match in header.finditer(text)]
    return text.count("\n", 0, starts[index]) + 1 if index < len(starts) else None
