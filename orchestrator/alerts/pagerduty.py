"""PagerDuty Events v2: trigger an incident on a failure, resolve it on the next success.

The dedup key is per DAG and task (`orchestrator/<dag>/<task>`, or `orchestrator/<dag>` for a
run), so repeated failures of one task update one incident and its next success closes it.
The alert id travels in `custom_details`; PagerDuty itself dedups on the key.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import ClassVar

from orchestrator.alerts.notifiers import Alert, BaseNotifier, post_json, read_secret_off_loop

EVENTS_URL = "https://events.pagerduty.com/v2/enqueue"


def dedup_key(dag_id: str | None, task_id: str | None) -> str:
    """One incident per DAG and task (per DAG for run-level events)."""
    return "/".join(part for part in ("orchestrator", dag_id or "daemon", task_id) if part)


@dataclass(frozen=True, kw_only=True)
class PagerDutyNotifier(BaseNotifier):
    """PagerDuty Events API v2; `url` may point at a proxy or a test receiver."""

    kind: ClassVar[str] = "pagerduty"
    routing_key_env: str | None = None
    routing_key_file: str | None = None
    url: str = EVENTS_URL
    severity: str = "error"

    async def notify(self, alert: Alert) -> None:
        key = await read_secret_off_loop(
            self.routing_key_env, self.routing_key_file, "the PagerDuty routing key"
        )
        for member in alert.members:  # PagerDuty takes one event per incident
            body = self._event(key, member)
            headers = {"X-Orchestrator-Alert-Id": member.alert_id}
            await post_json(self.url, json.dumps(body).encode(), headers, "PagerDuty")

    def _event(self, routing_key: str, alert: Alert) -> dict[str, object]:
        event: dict[str, object] = {
            "routing_key": routing_key,
            "event_action": "resolve" if alert.action == "resolve" else "trigger",
            "dedup_key": dedup_key(alert.dag_id, alert.task_id),
        }
        if alert.action != "resolve":
            event["payload"] = {
                "summary": alert.title()[:1024],
                "source": "orchestrator",
                "severity": self.severity,
                "custom_details": {
                    "alert_id": alert.alert_id,
                    "event": alert.event,
                    "dag_id": alert.dag_id,
                    "task_id": alert.task_id,
                    "run_id": alert.run_id,
                    "try_number": alert.try_number,
                    "error": alert.summary,
                },
            }
            if alert.link:
                event["links"] = [{"href": alert.link, "text": "the run"}]
        return event
