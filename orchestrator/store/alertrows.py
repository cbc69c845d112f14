"""The alerts outbox: its record, its rows, and how its writes become SQL.

An `AlertRecord` is one alert for one channel. The engine adds it (`WriteBatch.add_alerts`) in
the transaction of the state change that caused it; the sender marks it sent
(`mark_alerts_sent`) or notes a failed attempt (`note_alert_failures`) and tries again.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from orchestrator.store.rows import Row

ALERT_COLUMNS = (
    "alert_id, created_at, event, action, channel, notifier, dag_id, run_id, task_id,"
    " map_index, try_number, summary, state, attempts, last_error, sent_at"
)
PENDING = "pending"
SENT = "sent"


@dataclass(frozen=True, kw_only=True)
class AlertRecord:
    """One alert for one channel, and how its delivery went."""

    alert_id: str
    created_at: float
    event: str  # task_failed, run_failed, ... (`orchestrator.alertconfig.EVENTS`), or "test"
    channel: str  # a channel's name, or what a DAG file attached (`dag:<dag_id>:<kind>:<hash>`)
    action: str = "trigger"  # trigger | resolve (PagerDuty closes the incident)
    notifier: str | None = None  # JSON classpath and kwargs of a DAG file's notifier
    dag_id: str | None = None
    run_id: str | None = None
    task_id: str | None = None
    map_index: int | None = None
    try_number: int | None = None
    summary: str = ""  # the error's last lines
    state: str = PENDING  # pending | sent
    attempts: int = 0
    last_error: str | None = None
    sent_at: float | None = None


def alert_params(alert: AlertRecord) -> tuple[Any, ...]:
    return (
        alert.alert_id,
        alert.created_at,
        alert.event,
        alert.action,
        alert.channel,
        alert.notifier,
        alert.dag_id,
        alert.run_id,
        alert.task_id,
        alert.map_index,
        alert.try_number,
        alert.summary,
        alert.state,
        alert.attempts,
        alert.last_error,
        alert.sent_at,
    )


def alert_from_row(row: Row) -> AlertRecord:
    names = [name.strip() for name in ALERT_COLUMNS.split(",")]
    return AlertRecord(**dict(zip(names, row, strict=True)))


# OR IGNORE: an alert whose id is made from what it is about (a proactive alert: this rule, this
# late run) is added at most once, even when a restarted engine finds the same late run again.
_INSERT = f"INSERT OR IGNORE INTO alerts ({ALERT_COLUMNS}) VALUES ({', '.join('?' * 16)})"
_MARK_SENT = (
    "UPDATE alerts SET state = 'sent', sent_at = ?, attempts = attempts + 1, last_error = NULL"
    " WHERE alert_id = ? AND state = 'pending'"
)
_NOTE_FAILURE = (
    "UPDATE alerts SET attempts = attempts + 1, last_error = ?"
    " WHERE alert_id = ? AND state = 'pending'"
)


def _add_alerts(connection: sqlite3.Connection, alerts: list[AlertRecord]) -> None:
    connection.executemany(_INSERT, [alert_params(alert) for alert in alerts])


def _mark_alerts_sent(connection: sqlite3.Connection, alert_ids: list[str], at: float) -> None:
    connection.executemany(_MARK_SENT, [(at, alert_id) for alert_id in alert_ids])


def _note_alert_failures(connection: sqlite3.Connection, alert_ids: list[str], error: str) -> None:
    connection.executemany(_NOTE_FAILURE, [(error, alert_id) for alert_id in alert_ids])


ALERT_HANDLERS: dict[str, Callable[..., None]] = {
    "add_alerts": _add_alerts,
    "mark_alerts_sent": _mark_alerts_sent,
    "note_alert_failures": _note_alert_failures,
}
