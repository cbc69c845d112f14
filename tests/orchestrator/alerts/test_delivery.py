"""Alerts end to end in one process: a failing task, the outbox, real receivers on loopback.

The engine commits the alert with the failure; the sender delivers it to a real HTTP server
(Slack, Standard Webhooks, PagerDuty formats) and a real SMTP server (aiosmtpd).
"""

from __future__ import annotations

import json
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, cast

import anyio
from alertkit import free_port, smtp_server, until
from httpserver import Reply, serve

from helpers import bag_of
from orchestrator import DAG, task
from orchestrator.alertconfig import AlertRule, ChannelConfig
from orchestrator.alerts import SlackNotifier
from orchestrator.alerts.sender import AlertSender
from orchestrator.api.signatures import verify_standard
from orchestrator.clock import Clock, FakeClock
from orchestrator.config import Settings
from orchestrator.daemon.alerting import channel_problem
from orchestrator.errors import StoreError
from orchestrator.policy import InputPolicy
from orchestrator.scheduling.engine import Engine
from orchestrator.scheduling.outbox import run_link
from orchestrator.state import RunState
from orchestrator.store.alertrows import AlertRecord
from orchestrator.store.base import Store, WriteBatch

SettingsFactory = Callable[..., Settings]
SECRET = "whsec_" + "c2VjcmV0LWtleS1mb3ItdGVzdHM="


def failing_dag(dag_id: str = "nightly", **dag_options: Any) -> DAG:
    @task(in_process=True)
    def load() -> None:
        raise RuntimeError("the table is empty\nsecond line of the error")

    with DAG(dag_id, **dag_options) as dag:
        load()
    return dag


def channel(name: str, kind: str, **options: Any) -> ChannelConfig:
    return ChannelConfig(name, kind, options, timeout=options.pop("timeout", 5.0), min_interval=0)


@asynccontextmanager
async def alerting(
    settings: Settings, dag: DAG, environ: dict[str, str], clock: Clock | None = None
) -> AsyncIterator[tuple[Engine, AlertSender]]:
    """An engine and a sender wired as the daemon wires them."""
    async with Engine.open(settings, dagbag=bag_of(dag), clock=clock) as engine:
        sender = AlertSender(
            engine.store,
            settings.alert_channels,
            clock=engine.clock,
            policy=InputPolicy.from_settings(settings),
            environ=environ,
            link=run_link(settings),
        )
        engine.outbox.wake = sender.wake
        async with anyio.create_task_group() as group:
            await group.start(sender.run)
            yield engine, sender
            group.cancel_scope.cancel()


async def fail_once(engine: Engine, dag_id: str = "nightly") -> str:
    with anyio.fail_after(20):
        run_id = await engine.trigger(dag_id)
        assert (await engine.wait(run_id)).state is RunState.FAILED
    return run_id


async def test_a_failing_task_reaches_slack_email_a_signed_webhook_and_pagerduty(
    make_settings: SettingsFactory,
) -> None:
    with serve() as http, smtp_server() as (mailbox, smtp_port):
        for path in ("/slack", "/hook", "/pd"):
            http.script(path, Reply.json({"ok": True}))
        channels = {
            "slack": channel("slack", "slack", url_env="SLACK_URL"),
            "hook": channel("hook", "webhook", url_env="HOOK_URL", secret_env="HOOK_SECRET"),
            "pd": channel("pd", "pagerduty", routing_key_env="PD_KEY", url=f"{http.url}/pd"),
            "mail": channel(
                "mail", "email", host="127.0.0.1", port=smtp_port, sender="o@x", to=("a@x",)
            ),
        }
        rule = AlertRule(on=("task_failed",), channels=("slack", "hook", "pd", "mail"))
        settings = make_settings(
            alert_channels=channels,
            alerts=(rule,),
            allow_private_urls=True,
            public_url="https://orch.example",
        )
        environ = {
            "SLACK_URL": f"{http.url}/slack",
            "HOOK_URL": f"{http.url}/hook",
            "HOOK_SECRET": SECRET,
            "PD_KEY": "routing-key",
        }
        async with alerting(settings, failing_dag(), environ) as (engine, _):
            run_id = await fail_once(engine)
            await until(lambda: http.hits() == 3 and mailbox.messages, "every delivery")
            alerts = await engine.store.list_alerts()
            await until(lambda: len(http.requests) == 3, "no more")
        assert {alert.channel for alert in alerts} == {"slack", "hook", "pd", "mail"}
        by_path = {seen.path: seen for seen in http.requests}
        slack = json.loads(by_path["/slack"].body)
        slack_id = by_path["/slack"].headers["X-Orchestrator-Alert-Id"]
        for needed in ("nightly", "load", run_id, "try 1", "second line of the error", slack_id):
            assert needed in slack["text"]
        assert f"https://orch.example/runs/{run_id}" in slack["text"]
        hook = by_path["/hook"]
        verify_standard(
            [b"secret-key-for-tests"],
            msg_id=hook.headers["webhook-id"],
            timestamp=hook.headers["webhook-timestamp"],
            signature=hook.headers["webhook-signature"],
            body=hook.body,
            now=float(hook.headers["webhook-timestamp"]),
        )
        assert json.loads(hook.body)["data"]["task_id"] == "load"
        pd = json.loads(by_path["/pd"].body)
        assert pd["event_action"] == "trigger" and pd["dedup_key"] == "orchestrator/nightly/load"
        assert pd["routing_key"] == "routing-key"
        assert pd["payload"]["custom_details"]["run_id"] == run_id
        (mail,) = mailbox.messages
        mail_id = next(a.alert_id for a in alerts if a.channel == "mail")
        assert mail["Message-ID"] == f"<{mail_id}@orchestrator>"
        assert "the table is empty" in mail.get_payload()


async def test_pagerduty_resolves_on_the_next_success(make_settings: SettingsFactory) -> None:
    attempts = {"n": 0}

    @task(in_process=True)
    def flaky() -> None:
        attempts["n"] += 1
        if attempts["n"] == 1:
            raise RuntimeError("first time fails")

    with DAG("flaky") as dag:
        flaky()
    with serve() as http:
        http.script("/pd", Reply.json({"status": "success"}))
        channels = {"pd": channel("pd", "pagerduty", routing_key_env="K", url=f"{http.url}/pd")}
        rule = AlertRule(on=("task_failed",), channels=("pd",))
        settings = make_settings(alert_channels=channels, alerts=(rule,), allow_private_urls=True)
        async with alerting(settings, dag, {"K": "key"}) as (engine, _):
            await fail_once(engine, "flaky")
            with anyio.fail_after(20):
                await engine.wait(await engine.trigger("flaky"))
            await until(lambda: http.hits("/pd") == 2, "trigger then resolve")
        actions = [json.loads(seen.body)["event_action"] for seen in http.requests]
        keys = {json.loads(seen.body)["dedup_key"] for seen in http.requests}
    assert actions == ["trigger", "resolve"] and keys == {"orchestrator/flaky/flaky"}


async def test_a_notifier_attached_to_the_dag_is_sent_from_the_outbox(
    make_settings: SettingsFactory,
) -> None:
    with serve() as http:
        http.script("/slack", Reply.json({"ok": True}))
        dag = failing_dag(on_failure=[SlackNotifier(url_env="TEAM_SLACK")])
        settings = make_settings(allow_private_urls=True)
        async with alerting(settings, dag, {"TEAM_SLACK": f"{http.url}/slack"}) as (engine, _):
            run_id = await fail_once(engine)
            await until(lambda: http.hits("/slack") == 1, "the DAG's own notifier")
            (alert,) = await engine.store.list_alerts()
    assert alert.event == "run_failed" and alert.channel.startswith("dag:nightly:slack:")
    assert alert.notifier is not None and "TEAM_SLACK" in alert.notifier
    assert "hooks" not in alert.notifier  # the URL itself is never stored
    assert run_id in json.loads(http.requests[0].body)["text"]


async def test_a_channel_that_answers_500_is_retried_with_backoff_until_200(
    make_settings: SettingsFactory,
) -> None:
    clock = FakeClock()
    with serve() as http:
        http.script("/slack", Reply(status=500), Reply.json({"ok": True}))
        rule = AlertRule(on=("run_failed",), channels=("slack",))
        settings = make_settings(
            alert_channels={"slack": channel("slack", "slack", url_env="U")},
            alerts=(rule,),
            allow_private_urls=True,
        )
        async with alerting(settings, failing_dag(), {"U": f"{http.url}/slack"}, clock) as (
            engine,
            sender,
        ):
            await fail_once(engine)
            await until(lambda: not sender.statuses()[0].healthy, "the failed attempt")
            (pending,) = await engine.store.list_pending_alerts()
            assert pending.attempts == 1 and "500" in (pending.last_error or "")
            clock.advance(1.0)  # the first backoff
            await until(lambda: sender.statuses()[0].sent == 1, "the retry")
            (sent,) = await engine.store.list_alerts()
    assert http.hits("/slack") == 2
    assert sent.state == "sent" and sent.attempts == 2 and sent.last_error is None


async def test_a_hanging_channel_times_out_and_never_delays_the_run(
    make_settings: SettingsFactory,
) -> None:
    release = threading.Event()
    with serve() as http:
        http.script("/slack", Reply(hold=release))
        rule = AlertRule(on=("task_failed", "run_failed"), channels=("slack",))
        config = channel("slack", "slack", url_env="U", timeout=0.3)
        settings = make_settings(
            alert_channels={"slack": config}, alerts=(rule,), allow_private_urls=True
        )
        try:
            async with alerting(settings, failing_dag(), {"U": f"{http.url}/slack"}) as (
                engine,
                sender,
            ):
                await fail_once(engine)  # finishes while the channel hangs
                await fail_once(engine)
                status = await until(
                    lambda: (s := sender.statuses()[0]).last_error and s, "the timeout"
                )
                assert "no answer within 0.3s" in status.last_error
                assert len(await engine.store.list_pending_alerts()) == 4
        finally:
            release.set()


async def test_an_unreachable_channel_is_reported_and_its_alerts_wait(
    make_settings: SettingsFactory,
) -> None:
    url = f"http://127.0.0.1:{free_port()}/nobody"
    rule = AlertRule(on=("run_failed",), channels=("slack",))
    settings = make_settings(
        alert_channels={"slack": channel("slack", "slack", url_env="U")},
        alerts=(rule,),
        allow_private_urls=True,
    )
    async with alerting(settings, failing_dag(), {"U": url}, FakeClock()) as (engine, sender):
        await fail_once(engine)
        status = await until(lambda: (s := sender.statuses()[0]).last_error and s, "a failure")
        assert "ConnectError" in status.last_error and not status.healthy
        (pending,) = await engine.store.list_pending_alerts()
        assert pending.state == "pending"


async def test_a_url_the_policy_blocks_and_a_missing_secret_break_only_their_channel() -> None:
    environ = {"U": "http://169.254.169.254/latest"}
    blocked = await channel_problem(channel("c", "slack", url_env="U"), InputPolicy(), environ)
    assert blocked is not None and "refused" in blocked
    missing = await channel_problem(channel("c", "slack", url_env="NOPE"), InputPolicy(), {})
    assert missing is not None and "NOPE is not set" in missing
    fine = channel("c", "slack", url_env="U")
    assert (
        await channel_problem(
            fine, InputPolicy(allow_private_urls=True), {"U": "http://127.0.0.1/"}
        )
        is None
    )


async def test_a_storm_of_a_thousand_alerts_is_grouped_and_none_is_lost(
    make_settings: SettingsFactory, tmp_path: Path
) -> None:
    with serve() as http:
        http.script("/slack", Reply.json({"ok": True}))
        config = ChannelConfig("slack", "slack", {"url_env": "U"}, min_interval=60.0)
        settings = make_settings(alert_channels={"slack": config}, allow_private_urls=True)
        clock = FakeClock()
        async with alerting(settings, failing_dag(), {"U": f"{http.url}/slack"}, clock) as (
            engine,
            sender,
        ):
            batch = WriteBatch()
            records = [
                AlertRecord(
                    alert_id=f"alert_{n:04d}",
                    created_at=clock.now() + n * 0.06,  # 1,000 in a minute
                    event="task_failed",
                    channel="slack",
                    dag_id="nightly",
                    task_id="load",
                    run_id=f"run-{n}",
                )
                for n in range(1000)
            ]
            batch.add_alerts(records)
            await engine.store.commit(batch)
            sender.wake()
            for sent in range(1, 11):  # rate-limited: one message per `min_interval`
                await until(lambda s=sent: http.hits("/slack") == s, f"message {sent}")
                # The receiver has the message a moment before the sender marks it sent.
                await pending_become(engine, 1000 - sent * 100)
                assert http.hits("/slack") == sent  # nothing more before the clock moves
                # Move the clock only once the sender waits out its interval: moved before,
                # its wait would start from the new time and the next message never come.
                due = clock.now() + 60.0
                await until(lambda due=due: due in clock.deadlines(), f"the wait after {sent}")
                clock.advance(60.0)
    texts = [json.loads(seen.body)["text"] for seen in http.requests]
    assert len(texts) == 10  # a thousand alerts, ten grouped messages
    listed = [f"alert_{n:04d}" for n in range(1000) if any(f"alert_{n:04d})" in t for t in texts)]
    assert len(listed) == 1000
    ids = {seen.headers["X-Orchestrator-Alert-Id"] for seen in http.requests}
    assert len(ids) == 10 and all(alert_id.startswith("group_") for alert_id in ids)


async def pending_become(engine: Engine, count: int) -> None:
    """Wait (under a deadline) until exactly `count` alerts are still pending; on a timeout,
    say how many were, so a failure under load tells a slow sender from a wrong grouping."""
    pending = -1
    with anyio.move_on_after(60):
        while (pending := len(await engine.store.list_pending_alerts(limit=2000))) != count:  # noqa: ASYNC110
            await anyio.sleep(0.01)
    assert pending == count, f"{pending} alerts pending after 60 s, expected {count}"


class FullDiskStore:
    """The engine's store, but its next `failures` commits fail as a full disk does."""

    def __init__(self, store: Store, failures: int) -> None:
        self._store = store
        self.failures = failures

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def commit(self, batch: WriteBatch) -> None:
        if self.failures > 0:
            self.failures -= 1
            raise StoreError("The write transaction failed (database or disk is full)")
        await self._store.commit(batch)


async def test_a_store_that_cannot_record_a_delivery_leaves_the_alert_pending_and_retries(
    make_settings: SettingsFactory,
) -> None:
    """A full disk while an alert goes out must not stop the sender (and the daemon with it):
    the alert stays pending and goes again once the store can record it (at least once)."""
    clock = FakeClock()
    with serve() as http:
        http.script("/slack", Reply.json({"ok": True}), Reply.json({"ok": True}))
        rule = AlertRule(on=("run_failed",), channels=("slack",))
        settings = make_settings(
            alert_channels={"slack": channel("slack", "slack", url_env="U")},
            alerts=(rule,),
            allow_private_urls=True,
        )
        async with Engine.open(settings, dagbag=bag_of(failing_dag()), clock=clock) as engine:
            full = FullDiskStore(engine.store, failures=1)
            sender = AlertSender(
                cast(Store, full),
                settings.alert_channels,
                clock=engine.clock,
                policy=InputPolicy.from_settings(settings),
                environ={"U": f"{http.url}/slack"},
                link=run_link(settings),
            )
            engine.outbox.wake = sender.wake
            async with anyio.create_task_group() as group:
                await group.start(sender.run)
                await fail_once(engine)
                await until(lambda: full.failures == 0, "the failed recording")
                (pending,) = await engine.store.list_pending_alerts()
                clock.advance(1.0)  # the first backoff
                await until(lambda: sender.statuses()[0].sent == 1, "the retry")
                (sent,) = await engine.store.list_alerts()
                group.cancel_scope.cancel()
    assert pending.state == "pending"
    assert http.hits("/slack") == 2  # delivered again: the first delivery was never recorded
    assert sent.state == "sent"
