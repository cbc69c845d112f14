"""`orchestrator alerts ...`: the alerts outbox (what was sent, what waits) and test messages.

Through the running daemon, which also knows each channel's health; with none, the store is
read read-only, and a test message is sent from this process.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from orchestrator.cli.options import load_cli_settings, settings_options

if TYPE_CHECKING:
    from orchestrator.config import Settings


@click.group("alerts")
def alerts_group() -> None:
    """List recent alerts with their delivery state; send a test message to a channel."""


@alerts_group.command("list")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 10_000))
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@settings_options
def list_alerts(limit: int, as_json: bool) -> None:
    """List the latest alerts: event, DAG, task, run, channel and whether it was sent.

    A channel that fails is listed with its last error (its alerts stay pending and are
    retried; none is dropped).

    \b
    Example:
      orchestrator alerts list --limit 20
    """
    from orchestrator.cli.output import echo_json

    answer = _fetch(load_cli_settings(), {"op": "alerts_list", "limit": limit})
    if as_json:
        echo_json(answer)
        return
    _print_channels(answer["channels"])
    if not answer["alerts"]:
        click.echo("No alerts yet.")
        return
    from orchestrator.cli.views import make_console

    make_console().print(_alerts_table(answer["alerts"]))


@alerts_group.command("test")
@click.argument("channel")
@settings_options
def test_channel(channel: str) -> None:
    """Send a test message to CHANNEL (a name under [alert_channels] in orchestrator.toml).

    \b
    Example:
      orchestrator alerts test ops-slack
    """
    from orchestrator.cli.daemonlink import ask_daemon, running_daemon

    settings = load_cli_settings()
    holder = running_daemon(settings)
    request = {"op": "alerts_test", "channel": channel}
    answer = ask_daemon(settings, holder, request) if holder else _test_here(settings, channel)
    click.echo(f"Sent a test message to {channel} (alert id {answer['alert_id']}).")


def _fetch(settings: Settings, request: dict[str, Any]) -> dict[str, Any]:
    from orchestrator.cli.daemonlink import ask_daemon, running_daemon

    holder = running_daemon(settings)
    if holder is not None:
        return ask_daemon(settings, holder, request)
    import anyio

    return anyio.run(_read_store, settings, request["limit"])


async def _read_store(settings: Settings, limit: int) -> dict[str, Any]:
    from dataclasses import asdict

    from orchestrator.cli.lookup import has_state
    from orchestrator.store import open_store

    channels = [
        {"channel": name, "kind": config.kind, "healthy": None, "last_error": None}
        for name, config in sorted(settings.alert_channels.items())
    ]
    if not has_state(settings):
        return {"alerts": [], "channels": channels}
    async with open_store(settings.state_dir, readonly=True) as store:
        alerts = await store.list_alerts(limit)
    return {"alerts": [asdict(alert) for alert in alerts], "channels": channels}


def _test_here(settings: Settings, channel: str) -> dict[str, Any]:
    import os

    import anyio

    from orchestrator.alerts.sender import AlertSender
    from orchestrator.clock import SystemClock
    from orchestrator.errors import RunError
    from orchestrator.policy import InputPolicy

    async def send() -> dict[str, Any]:
        sender = AlertSender(
            None,  # type: ignore[arg-type]  # a test message never touches the outbox
            settings.alert_channels,
            clock=SystemClock(),
            policy=InputPolicy.from_settings(settings),
            environ=os.environ,
            link=lambda run_id: None,
        )
        try:
            alert = await sender.send_test(channel)
        except (OSError, TimeoutError) as error:
            raise RunError(f"the test message was not delivered: {error}") from None
        return {"alert_id": alert.alert_id}

    return anyio.run(send)


def _print_channels(channels: list[dict[str, Any]]) -> None:
    for channel in channels:
        if channel.get("healthy") is False:
            click.echo(f"channel {channel['channel']}: FAILING: {channel['last_error']}")
        elif channel.get("healthy"):
            click.echo(f"channel {channel['channel']}: ok ({channel.get('pending', 0)} pending)")


def _alerts_table(alerts: list[dict[str, Any]]) -> Any:
    from rich import box
    from rich.table import Table

    from orchestrator.cli.views import format_time

    table = Table(box=box.SIMPLE_HEAD)
    for column in ("created", "event", "dag", "task", "run", "channel", "state", "attempts"):
        table.add_column(column, no_wrap=True)
    table.add_column("last error")
    for alert in alerts:
        table.add_row(
            format_time(alert["created_at"]),
            alert["event"],
            alert["dag_id"] or "-",
            alert["task_id"] or "-",
            alert["run_id"] or "-",
            alert["channel"],
            alert["state"],
            str(alert["attempts"]),
            alert["last_error"] or "",
        )
    return table
