"""Alert rules: which committed state changes become alerts, and for which channels.

`AlertRules.add(tx)` runs just before a transaction commits: it reads the changes the
transaction announces (and the run-trigger errors it records) and adds one outbox row per
alert and channel to the same write batch, so an alert exists if and only if the state
change that caused it does. Nothing here waits on the network: the sender sends later.
"""

from __future__ import annotations

import fnmatch
import uuid
from collections.abc import Callable, Iterator
from typing import Any

from orchestrator.alertconfig import AlertRule, ChannelConfig
from orchestrator.alerts.channels import attached_channel, attached_notifiers
from orchestrator.alerts.notifiers import BaseNotifier
from orchestrator.alerts.pagerduty import PagerDutyNotifier, dedup_key
from orchestrator.authoring.dag import DAG
from orchestrator.changes import Change, RunChanged, TaskChanged, endings
from orchestrator.state import RunState, TaskState
from orchestrator.store.alertrows import AlertRecord
from orchestrator.store.base import WriteBatch

SUMMARY_LINES = 12  # the error's last lines an alert carries
SUMMARY_CHARS = 2000
_TIMEOUT_PREFIX = "TriggerTimeoutError"

#: (event, dag_id, task_id, run_id, try_number, error)
Occurrence = tuple[str, str | None, str | None, str | None, int | None, str | None]


def new_alert_id() -> str:
    return f"alert_{uuid.uuid4().hex}"


def summarize(error: str | None) -> str:
    """The last lines of an error (where a traceback says what went wrong), bounded."""
    if not error:
        return ""
    return "\n".join(error.rstrip().splitlines()[-SUMMARY_LINES:])[-SUMMARY_CHARS:]


class AlertRules:
    """Turns a transaction's changes into outbox rows; tracks open PagerDuty incidents."""

    def __init__(
        self,
        rules: tuple[AlertRule, ...],
        channels: dict[str, ChannelConfig],
        dag_of: Callable[[str], DAG | None],
        link: Callable[[str], str | None],
    ) -> None:
        self.rules = rules
        self.channels = channels
        self._dag_of = dag_of  # run_id -> its DAG, for changes that name only the run
        self._link = link  # run_id -> the run's page
        self._open: set[tuple[str, str]] = set()  # (channel, PagerDuty dedup key) triggered
        self.added = 0  # rows added by the last `add`

    def load(self, records: list[AlertRecord]) -> None:
        """Rebuild which PagerDuty incidents are open from the outbox (oldest first)."""
        for record in records:
            key = (record.channel, dedup_key(record.dag_id, record.task_id))
            if record.action == "resolve":
                self._open.discard(key)
            elif self._is_pagerduty(record.channel, record.notifier):
                self._open.add(key)

    def add(self, changes: list[Change], batch: WriteBatch, now: float) -> int:
        """Add the alerts `changes` cause to `batch`; returns how many rows."""
        ended = endings(changes)
        records = [
            record
            for change in ended
            for occurrence in self._occurrences(change)
            for record in self._records(occurrence, now)
        ]
        records += self._resolutions(ended, now)
        if records:
            batch.add_alerts(records)
        self.added = len(records)
        return self.added

    def add_source_errors(self, batch: WriteBatch, now: float) -> None:
        """A run trigger stopped with an error: `trigger_error` (read from the batch's ops)."""
        records = []
        for op in batch.ops:
            if op.kind == "set_source_error" and op.args["error"]:
                dag_id, error = op.args["dag_id"], op.args["error"]
                occurrence = ("trigger_error", dag_id, None, None, None, error)
                records += self._records(occurrence, now)
        if records:
            batch.add_alerts(records)
            self.added += len(records)

    def occurrence_records(self, occurrence: Occurrence, now: float) -> list[AlertRecord]:
        """The rows for an event outside a transaction's changes (the daemon's own events)."""
        return self._records(occurrence, now)

    # -- what happened -------------------------------------------------------------------------

    def _occurrences(self, change: Change) -> Iterator[Occurrence]:
        if isinstance(change, TaskChanged) and change.state is TaskState.FAILED:
            dag = self._dag_of(change.run_id)
            timed_out = (change.error or "").startswith(_TIMEOUT_PREFIX)
            event = "sensor_timeout" if timed_out else "task_failed"
            dag_id = dag.dag_id if dag else None
            yield event, dag_id, change.task_id, change.run_id, change.try_number, change.error
        elif isinstance(change, RunChanged) and change.state is RunState.FAILED:
            yield "run_failed", change.dag_id, None, change.run_id, None, None

    # -- to whom -------------------------------------------------------------------------------

    def _records(self, occurrence: Occurrence, now: float) -> list[AlertRecord]:
        event, dag_id, task_id, run_id, try_number, error = occurrence
        fields: dict[str, Any] = {
            "created_at": now,
            "event": event,
            "dag_id": dag_id,
            "run_id": run_id,
            "task_id": task_id,
            "try_number": try_number,
            "summary": summarize(error),
        }
        records = [
            AlertRecord(alert_id=new_alert_id(), channel=channel, **fields)
            for channel in self._configured_channels(event, dag_id)
        ]
        for notifier in self._attached(event, dag_id, task_id, run_id):
            channel = attached_channel(dag_id or "", notifier)
            records.append(
                AlertRecord(
                    alert_id=new_alert_id(),
                    channel=channel,
                    notifier=notifier.serialize(),
                    **fields,
                )
            )
        for record in records:
            if self._is_pagerduty(record.channel, record.notifier):
                self._open.add((record.channel, dedup_key(dag_id, task_id)))
        return records

    def _configured_channels(self, event: str, dag_id: str | None) -> list[str]:
        channels: list[str] = []
        for rule in self.rules:
            if _matches(rule, event, dag_id):
                channels += [name for name in rule.channels if name not in channels]
        return channels

    def _attached(
        self, event: str, dag_id: str | None, task_id: str | None, run_id: str | None
    ) -> list[BaseNotifier]:
        dag = self._dag_of(run_id) if run_id else None
        if dag is None:
            return []
        if task_id is None:
            return attached_notifiers(dag.on_failure) if event == "run_failed" else []
        task = dag.tasks.get(task_id)
        return attached_notifiers(task.options.on_failure) if task is not None else []

    def _is_pagerduty(self, channel: str, notifier: str | None) -> bool:
        if notifier is not None:
            return PagerDutyNotifier.__qualname__ in notifier
        config = self.channels.get(channel)
        return config is not None and config.kind == "pagerduty"

    # -- resolving -----------------------------------------------------------------------------

    def _resolutions(
        self, changes: list[TaskChanged | RunChanged], now: float
    ) -> list[AlertRecord]:
        """The next success of a DAG or task with an open PagerDuty incident resolves it."""
        records: list[AlertRecord] = []
        if not self._open:  # the usual case: no success has anything to resolve
            return records
        names: tuple[str | None, str | None, str]
        for change in changes:
            if isinstance(change, TaskChanged) and change.state is TaskState.SUCCESS:
                dag = self._dag_of(change.run_id)
                key = dedup_key(dag.dag_id if dag else None, change.task_id)
                names = (dag.dag_id if dag else None, change.task_id, change.run_id)
            elif isinstance(change, RunChanged) and change.state is RunState.SUCCESS:
                key = dedup_key(change.dag_id, None)
                names = (change.dag_id, None, change.run_id)
            else:
                continue
            for channel, open_key in sorted(self._open):
                if open_key == key:
                    self._open.discard((channel, open_key))
                    record = self._resolution(channel, names, now)
                    if record.notifier is not None or not channel.startswith("dag:"):
                        records.append(record)
        return records

    def _resolution(
        self, channel: str, names: tuple[str | None, str | None, str], now: float
    ) -> AlertRecord:
        dag_id, task_id, run_id = names
        notifier = None
        if channel.startswith("dag:") and (dag := self._dag_of(run_id)) is not None:
            hooks = [dag.on_failure, *(t.options.on_failure for t in dag.tasks.values())]
            for notifier_object in (n for hook in hooks for n in attached_notifiers(hook)):
                if attached_channel(dag.dag_id, notifier_object) == channel:
                    notifier = notifier_object.serialize()
        return AlertRecord(
            alert_id=new_alert_id(),
            created_at=now,
            event="resolved",
            action="resolve",
            channel=channel,
            notifier=notifier,
            dag_id=dag_id,
            task_id=task_id,
            run_id=run_id,
        )


def _matches(rule: AlertRule, event: str, dag_id: str | None) -> bool:
    wanted = event in rule.on or (event == "sensor_timeout" and "task_failed" in rule.on)
    if not wanted:
        return False
    if not rule.dags:
        return True
    return dag_id is not None and any(fnmatch.fnmatchcase(dag_id, glob) for glob in rule.dags)
