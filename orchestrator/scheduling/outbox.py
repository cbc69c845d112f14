"""The engine's side of the alerts outbox: alerts join the transaction that causes them.

Before each commit, `add` turns the transaction's changes into outbox rows in the same write
batch (`alerts.rules`), with the proactive alerts of whatever is overdue (`overdue`); after
it, `committed` wakes whoever sends them (the daemon's `AlertSender`). The engine itself
never waits on a channel.
"""

from __future__ import annotations

from collections.abc import Callable

from orchestrator.alerts.rules import AlertRules
from orchestrator.authoring.dag import DAG
from orchestrator.config import Settings
from orchestrator.crashpoints import crashpoint
from orchestrator.scheduling.active_runs import Transitions
from orchestrator.scheduling.autostart import RunStarter
from orchestrator.scheduling.overdue import OverdueAlerts
from orchestrator.scheduling.scheduler import Scheduler


def run_link(settings: Settings) -> Callable[[str], str]:
    """The run's page in the UI: under `public_url`, else the API's own address."""
    base = settings.public_url or f"http://{_host(settings.api_host)}:{settings.api_port}"
    return lambda run_id: f"{base}/runs/{run_id}"


def _host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


class AlertOutbox:
    """Adds alerts to transactions; `wake` is called after a commit that added some."""

    def __init__(
        self,
        settings: Settings,
        dag_of: Callable[[str], DAG | None],
        scheduler: Scheduler,
        starter: RunStarter,
    ) -> None:
        channels = dict(settings.alert_channels)
        self.rules = AlertRules(settings.alerts, channels, dag_of, run_link(settings))
        self.overdue = OverdueAlerts(settings.alerts, scheduler, starter)
        self.wake: Callable[[], None] = _nothing

    def add(self, tx: Transitions) -> None:
        self.rules.add(tx.changes, tx.batch, tx.now)
        self.rules.add_source_errors(tx.batch, tx.now)
        self.rules.added += self.overdue.add(tx.batch, tx.now)

    def committed(self) -> None:
        if self.rules.added:
            self.rules.added = 0
            crashpoint("alert_committed")
            self.wake()


def _nothing() -> None:
    """No sender listens (a foreground run): the alerts wait in the outbox for the daemon."""
