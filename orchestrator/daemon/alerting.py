"""The daemon's alerts: the outbox's sender, the start-up checks and the daemon's own events.

At start the sender serves what a crash left in the outbox; each configured channel is
checked (its secret variables or files present, its URL admitted by the input policy), and a
broken one is logged and shown in its status, but the daemon starts: alerts for it wait in
the outbox and go out once it is fixed. A daemon that finds the last writer did not stop
cleanly (its WAL marker still `dirty`) raises `daemon_started_after_crash`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

from anyio.abc import TaskGroup

from orchestrator.alertconfig import ChannelConfig
from orchestrator.alerts.notifiers import (
    Delivery,
    NotifierError,
    read_secret_off_loop,
    redact,
    set_delivery,
)
from orchestrator.alerts.sender import AlertSender
from orchestrator.config import Settings
from orchestrator.errors import PolicyError
from orchestrator.policy import InputPolicy
from orchestrator.scheduling.engine import Engine
from orchestrator.scheduling.outbox import run_link
from orchestrator.store.base import WriteBatch
from orchestrator.store.statedir import DB_FILENAME
from orchestrator.store.walmark import read_marker

logger = logging.getLogger("orchestrator.alerts")

_SECRET_SOURCES = (("url_env", "url_file"), ("secret_env", "secret_file"))
_URL_SOURCES = ("url_env", "url_file")


def stopped_uncleanly(state_dir: Path) -> bool:
    """True if the last writer of the store did not stop cleanly (read before opening it)."""
    database = state_dir / DB_FILENAME
    return database.exists() and read_marker(database) != b"clean\n"


def secret_variables(channels: Mapping[str, ChannelConfig]) -> list[str]:
    """The environment variables channels read secrets from: withheld from tasks."""
    return [
        value
        for config in channels.values()
        for key, value in config.options.items()
        if key.endswith("_env") and isinstance(value, str)
    ]


async def start_alerts(
    settings: Settings,
    engine: Engine,
    environ: Mapping[str, str],
    task_group: TaskGroup,
    *,
    crashed: bool,
) -> AlertSender:
    """Start the sender in `task_group`, wired to the engine's commits."""
    policy = InputPolicy.from_settings(settings)
    sender = AlertSender(
        engine.store,
        settings.alert_channels,
        clock=engine.clock,
        policy=policy,
        environ=environ,
        link=run_link(settings),
    )
    history = await engine.store.list_alerts(limit=1000)
    engine.outbox.rules.load(list(reversed(history)))
    engine.outbox.wake = sender.wake
    await task_group.start(sender.run)
    for name, config in settings.alert_channels.items():
        problem = await channel_problem(config, policy, environ)
        if problem is not None:
            logger.error("alert channel %s is broken: %s", name, problem)
            sender.mark_broken(name, problem)
    if crashed:
        await _alert_daemon_crash(engine)
    return sender


async def channel_problem(
    config: ChannelConfig, policy: InputPolicy, environ: Mapping[str, str]
) -> str | None:
    """What keeps a channel from working (a missing secret, a refused URL); None if nothing."""
    set_delivery(Delivery(policy=policy, environ=environ))
    options = config.options
    try:
        for env_key, file_key in (*_SECRET_SOURCES, ("routing_key_env", "routing_key_file")):
            if env_key in options or file_key in options:
                what = f"`{env_key.removesuffix('_env')}`"
                value = await read_secret_off_loop(
                    options.get(env_key), options.get(file_key), what
                )
                if env_key == "url_env" or file_key == "url_file":
                    try:
                        await policy.check_url(value)
                    except PolicyError as error:
                        raise PolicyError(redact(str(error), value)) from None
        if config.kind == "pagerduty" and "url" in options:
            await policy.check_url(str(options["url"]))
        if options.get("username"):
            await read_secret_off_loop(
                options.get("password_env"), options.get("password_file"), "the SMTP password"
            )
    except (NotifierError, PolicyError) as error:
        return str(error)
    return None


async def _alert_daemon_crash(engine: Engine) -> None:
    occurrence = ("daemon_started_after_crash", None, None, None, None, None)
    records = engine.outbox.rules.occurrence_records(occurrence, engine.clock.now())
    if records:
        batch = WriteBatch()
        batch.add_alerts(records)
        await engine.store.commit(batch)
        engine.outbox.wake()
