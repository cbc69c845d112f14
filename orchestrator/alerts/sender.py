"""The outbox's sender: delivers pending alerts after their commit, and never holds up a run.

One task per channel, in the daemon's task group; only these tasks wait on the network. Each
takes the channel's oldest pending alerts (up to `GROUP_SIZE`), sends them as one message
(a storm becomes a few grouped messages, every alert listed), and marks them sent. A failed
attempt (an error, a non-2xx, no answer within the channel's `timeout`) is logged, noted on
the rows and in the channel's status, and retried after an exponential backoff: nothing is
dropped. Between two messages a channel waits `min_interval` (its rate limit). A stop lets
the message under way finish (within its `timeout`) and records it.

On start, and whenever a commit added alerts (`wake`), every channel with pending alerts is
served: alerts a crash left between commit and send go out once the daemon is back.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace

import anyio
from anyio.abc import TaskStatus

from orchestrator.alertconfig import ChannelConfig
from orchestrator.alerts.channels import build_channel, rebuild_notifier
from orchestrator.alerts.notifiers import Alert, Delivery, Notifier, NotifierError, set_delivery
from orchestrator.clock import Clock
from orchestrator.errors import OrchestratorError, StoreError
from orchestrator.policy import InputPolicy
from orchestrator.store.alertrows import AlertRecord
from orchestrator.store.base import Store, WriteBatch

logger = logging.getLogger("orchestrator.alerts")

GROUP_SIZE = 100  # alerts in one message at most
FIRST_BACKOFF = 1.0
MAX_BACKOFF = 300.0


@dataclass(frozen=True)
class ChannelStatus:
    """How a channel is doing, for `orchestrator alerts list` and the UI's home page."""

    channel: str
    kind: str
    healthy: bool = True
    pending: int = 0
    sent: int = 0
    failures: int = 0  # attempts failed in a row
    last_error: str | None = None
    last_sent_at: float | None = None


class AlertSender:
    """Delivers the outbox. Start `run` in a task group; call `wake` after a commit."""

    def __init__(
        self,
        store: Store,
        channels: Mapping[str, ChannelConfig],
        *,
        clock: Clock,
        policy: InputPolicy,
        environ: Mapping[str, str],
        link: Callable[[str], str | None],
    ) -> None:
        self._store = store
        self._configs = dict(channels)
        self._clock = clock
        self._policy = policy
        self._environ = environ
        self._link = link
        self._wake = anyio.Event()
        self._workers: dict[str, anyio.Event] = {}
        self._status: dict[str, ChannelStatus] = {
            name: ChannelStatus(name, config.kind) for name, config in channels.items()
        }

    def statuses(self) -> list[ChannelStatus]:
        """A snapshot of every channel's status (configured ones, and DAG files' in use)."""
        return [self._status[name] for name in sorted(self._status)]

    def mark_broken(self, channel: str, problem: str) -> None:
        """A start-up check found the channel cannot work (a missing secret, a refused URL)."""
        status = self._status_of(channel, self._configs.get(channel))
        self._status[channel] = replace(status, healthy=False, last_error=problem)

    def wake(self) -> None:
        """New alerts were committed: look for them."""
        self._wake.set()

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        set_delivery(Delivery(policy=self._policy, environ=self._environ))
        async with anyio.create_task_group() as group:
            task_status.started()
            self._wake.set()  # what a crash left in the outbox goes out first
            while True:
                await self._wake.wait()
                self._wake = anyio.Event()
                pending = await self._store.list_pending_alerts(limit=10_000)
                for channel in dict.fromkeys(record.channel for record in pending):
                    if channel not in self._workers:
                        self._workers[channel] = anyio.Event()
                        group.start_soon(self._serve_channel, channel)
                    self._workers[channel].set()

    async def send_test(self, channel: str) -> Alert:
        """Send a test message to a configured channel now (no outbox); raises on failure."""
        config = self._configs.get(channel)
        if config is None:
            known = ", ".join(sorted(self._configs)) or "none configured"
            raise OrchestratorError(f"there is no alert channel {channel!r} (channels: {known})")
        alert = Alert(
            alert_id=f"test_{hashlib.sha256(str(self._clock.now()).encode()).hexdigest()[:16]}",
            event="test",
            at=self._clock.now(),
            summary=f"A test message to channel {channel}: alerts reach you.",
        )
        set_delivery(self._delivery(config))
        with anyio.fail_after(config.timeout):
            await build_channel(config).notify(alert)
        return alert

    # -- one channel ---------------------------------------------------------------------------

    async def _serve_channel(self, channel: str) -> None:
        backoff = FIRST_BACKOFF
        while True:
            records = await self._store.list_pending_alerts(channel, limit=GROUP_SIZE)
            if not records:
                await self._idle(channel)
                continue
            # Shielded: a stop waits for the message under way (at most the channel's
            # `timeout`) and records it, so the next start does not send it again.
            with anyio.CancelScope(shield=True):
                recorded = await self._recorded(channel, records)
            if recorded:
                backoff = FIRST_BACKOFF
                interval = self._config(channel, records[0]).min_interval
                await self._clock.sleep_until(self._clock.now() + interval)
            else:
                await self._clock.sleep_until(self._clock.now() + backoff)
                backoff = min(backoff * 2, MAX_BACKOFF)

    async def _idle(self, channel: str) -> None:
        event = self._workers[channel] = anyio.Event()
        await event.wait()

    async def _recorded(self, channel: str, records: list[AlertRecord]) -> bool:
        """Deliver, and True once that is recorded. A store that cannot commit (a full disk)
        leaves the alerts pending, to try again after the backoff: delivery is at least once,
        and the sender (with the daemon) goes on."""
        try:
            return await self._deliver(channel, records)
        except StoreError as error:
            logger.warning(
                "alert channel %s: cannot record the outcome of %d alert(s), will retry: %s",
                channel,
                len(records),
                error,
            )
            return False

    async def _deliver(self, channel: str, records: list[AlertRecord]) -> bool:
        """One attempt for these records; True once they are sent and marked so."""
        config = self._config(channel, records[0])
        alert = self._message(records)
        try:
            notifier = self._notifier(channel, records[0])
            set_delivery(self._delivery(config))
            with anyio.fail_after(config.timeout):
                await notifier.notify(alert)
        except TimeoutError:
            return await self._failed(channel, records, f"no answer within {config.timeout:g}s")
        except (OrchestratorError, OSError, ValueError, TypeError) as error:
            return await self._failed(channel, records, str(error) or type(error).__name__)
        batch = WriteBatch()
        now = self._clock.now()
        batch.mark_alerts_sent([record.alert_id for record in records], now)
        await self._store.commit(batch)
        status = self._status_of(channel, config)
        self._status[channel] = replace(
            status, healthy=True, failures=0, last_error=None, sent=status.sent + len(records)
        )
        self._status[channel] = replace(self._status[channel], last_sent_at=now)
        return True

    async def _failed(self, channel: str, records: list[AlertRecord], error: str) -> bool:
        logger.warning(
            "alert channel %s: %d alert(s) not delivered, will retry: %s",
            channel,
            len(records),
            error,
        )
        batch = WriteBatch()
        batch.note_alert_failures([record.alert_id for record in records], error[:1000])
        await self._store.commit(batch)
        status = self._status_of(channel, None)
        self._status[channel] = replace(
            status, healthy=False, failures=status.failures + 1, last_error=error[:1000]
        )
        return False

    def _notifier(self, channel: str, record: AlertRecord) -> Notifier:
        if record.notifier is not None:
            return rebuild_notifier(record.notifier)
        config = self._configs.get(channel)
        if config is None:
            raise NotifierError(f"the channel {channel} is no longer configured")
        return build_channel(config)

    def _config(self, channel: str, record: AlertRecord) -> ChannelConfig:
        """A configured channel's settings; a DAG file's notifier gets the defaults."""
        return self._configs.get(channel) or ChannelConfig(channel, _kind_of(record))

    def _delivery(self, config: ChannelConfig) -> Delivery:
        return Delivery(policy=self._policy, environ=self._environ, timeout=config.timeout)

    def _status_of(self, channel: str, config: ChannelConfig | None) -> ChannelStatus:
        kind = config.kind if config else "notifier"
        return self._status.setdefault(channel, ChannelStatus(channel, kind))

    def _message(self, records: list[AlertRecord]) -> Alert:
        alerts = tuple(self._alert(record) for record in records)
        if len(alerts) == 1:
            return alerts[0]
        # The same group sent again (a crash before it was marked) has the same id.
        digest = hashlib.sha256(" ".join(a.alert_id for a in alerts).encode()).hexdigest()
        return Alert(
            alert_id=f"group_{digest[:32]}", event="grouped", at=alerts[-1].at, grouped=alerts
        )

    def _alert(self, record: AlertRecord) -> Alert:
        return Alert(
            alert_id=record.alert_id,
            event=record.event,
            at=record.created_at,
            action=record.action,
            dag_id=record.dag_id,
            run_id=record.run_id,
            task_id=record.task_id,
            try_number=record.try_number,
            summary=record.summary,
            link=self._link(record.run_id) if record.run_id else None,
        )


def _kind_of(record: AlertRecord) -> str:
    parts = record.channel.split(":")
    return parts[2] if len(parts) > 3 else "notifier"
