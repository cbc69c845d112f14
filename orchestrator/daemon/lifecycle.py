"""`orchestrator daemon`: the loader, scheduler, triggerer and executor in one long-lived process.

```
orchestrator daemon --dags-folder examples/
```

It holds the state directory's lock for its whole life (a second daemon is refused with who
holds it), checks the store's integrity, picks up what an earlier process left (recovery),
then starts runs from schedules and run triggers, reloads DAG files as they change, serves
the HTTP API and webhooks (127.0.0.1:8686 by default, in this same event loop) and answers
the CLI on its control socket. SIGTERM or SIGINT stops it cleanly: no new work (the API's
health says "stopping" and new runs get a 503), running tasks get `shutdown_grace` seconds,
then are stopped and recorded to run again; a second signal ends the grace period at once.
"""

from __future__ import annotations

import gc
import logging
import os
import signal
from collections.abc import Callable
from contextlib import AsyncExitStack
from dataclasses import asdict
from functools import partial
from typing import Any

import anyio
from anyio.abc import TaskStatus

from orchestrator.alerts.sender import AlertSender
from orchestrator.api.context import ApiContext
from orchestrator.api.registry import ApiRegistry
from orchestrator.api.registryops import RegistryOps
from orchestrator.api.server import serve_api
from orchestrator.api.withheld import WithheldEnviron, withhold_webhook_secrets
from orchestrator.config import Settings
from orchestrator.crashpoints import check_crash_setting
from orchestrator.daemon.alerting import secret_variables, start_alerts, stopped_uncleanly
from orchestrator.daemon.control import control_path, serve_control
from orchestrator.daemon.reload import follow_dag_folder
from orchestrator.daemon.state_lock import StateDirLock
from orchestrator.daemon.variableops import answer_variable_request
from orchestrator.descriptors import raise_open_file_limit
from orchestrator.errors import OrchestratorError, RunError, StoreError
from orchestrator.scheduling.engine import Engine
from orchestrator.store import open_store
from orchestrator.store.statedir import DB_FILENAME
from orchestrator.ui.app import build_app
from orchestrator.ui.context import UiContext
from orchestrator.ui.sessions import LINK_SECONDS

logger = logging.getLogger("orchestrator.daemon")


async def serve(settings: Settings, *, on_ready: Callable[[Engine], None] | None = None) -> None:
    """Run the daemon until SIGTERM or SIGINT, then stop cleanly."""
    check_crash_setting()
    _raise_open_file_limit()
    acquire = partial(StateDirLock.acquire, settings.state_dir, command="orchestrator daemon")
    with await anyio.to_thread.run_sync(acquire):
        crashed = await anyio.to_thread.run_sync(stopped_uncleanly, settings.state_dir)
        await _check_integrity(settings)
        environ = await _withhold_secrets(settings)  # before the first worker starts
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async with Engine.open(settings, start_runs=True) as engine:
                registry = await ApiRegistry.load(engine.store, environ=environ)
                api = ApiContext(engine, registry)
                control = DaemonControl(engine, api)
                async with AsyncExitStack() as stack, anyio.create_task_group() as tg:
                    # Watching before the control socket answers: a CLI (or a test) that saw
                    # the daemon ready and then edits a DAG file is never missed.
                    await tg.start(follow_dag_folder, engine)
                    control.alerts = await start_alerts(
                        settings, engine, environ, tg, crashed=crashed
                    )
                    await tg.start(_serve_control_until_cancelled, settings, control)
                    if settings.api_enabled:
                        app, control.ui = build_app(api, channels=control.alerts.statuses)
                        stack.callback(control.ui.close)
                        control.api_url = await tg.start(serve_api, app, settings)
                    _freeze_startup_objects()
                    _log_ready(engine)
                    if on_ready is not None:
                        on_ready(engine)
                    async for signum in signals:
                        logger.info("%s: stopping", signal.Signals(signum).name)
                        break
                    api.stopping = True  # health says so; new runs are refused with a 503
                    tg.start_soon(_hurry_on_second_signal, signals, engine)
                    await engine.shutdown(settings.shutdown_grace)
                    tg.cancel_scope.cancel()
    logger.info("stopped")


async def _serve_control_until_cancelled(
    settings: Settings,
    control: DaemonControl,
    *,
    task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    async with serve_control(control_path(settings.state_dir), control.handle):
        task_status.started()
        await anyio.sleep_forever()


def _raise_open_file_limit() -> None:
    """Every connection, log and pipe is an open file: take all the system allows us."""
    before, after = raise_open_file_limit()
    if after != before:
        logger.info("open-file limit raised from %d to %d", before, after)


async def _check_integrity(settings: Settings) -> None:
    """Refuse to start on a damaged database rather than make it worse."""
    async with open_store(settings.state_dir, synchronous=settings.synchronous) as store:
        problems = await store.integrity_check()
    if problems:
        listed = "; ".join(problems[:5])
        raise StoreError(
            f"the database in {settings.state_dir} failed its integrity check ({listed}). "
            "Restore it from a backup, or move it away to start afresh."
        )


async def _withhold_secrets(settings: Settings) -> WithheldEnviron:
    """Take the webhooks' secret variables out of the environment every task inherits."""
    async with open_store(settings.state_dir, synchronous=settings.synchronous) as store:
        webhooks = await store.list_webhooks()
    environ = WithheldEnviron(os.environ)
    withhold_webhook_secrets(environ, (webhook.secret_env for webhook in webhooks))
    environ.withhold(secret_variables(settings.alert_channels))
    return environ


async def _hurry_on_second_signal(signals: Any, engine: Engine) -> None:
    async for signum in signals:
        logger.warning("%s again: stopping running tasks now", signal.Signals(signum).name)
        engine.hurry()


def _freeze_startup_objects() -> None:
    """Leave what start-up made (modules, DAGs, the app) out of the cycle collector's scans.

    Half a million objects that live as long as the daemon made each full collection a
    pause of 50-70 ms with every request waiting on the loop (the whole p99 of 64 webhook
    senders). Frozen objects are still freed when their last reference goes; only cycles
    among them (a DAG replaced by a reload) are never collected, a bounded, one-time cost.
    """
    gc.freeze()


def _log_ready(engine: Engine) -> None:
    bag = engine.dagbag
    logger.info(
        "daemon ready (pid %d): %d DAG(s) from %s, state in %s",
        os.getpid(),
        len(bag.dags),
        bag.folder,
        engine.settings.state_dir,
    )
    for error in bag.errors:
        logger.error("%s", error)


class DaemonControl(RegistryOps):
    """Answers the control socket: what the CLI asks a running daemon to do.

    The socket is the local twin of the HTTP API: the same engine calls, for the user who
    owns the state directory (the socket is mode 0600), with no token to manage.
    """

    def __init__(self, engine: Engine, api: ApiContext) -> None:
        self.engine = engine
        self.registry = api.registry
        self.api_url: str | None = None  # where the HTTP API listens, once it does
        self.alerts: AlertSender | None = None  # the alerts outbox's sender, once started
        self.ui: UiContext | None = None  # the web UI, served with the API

    async def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        op = request.get("op")
        method = getattr(self, f"_op_{op}", None) if isinstance(op, str) else None
        if method is None:
            raise RunError(f"the daemon does not know the request {op!r}")
        result: dict[str, Any] = await method(request)
        return result

    async def _op_ping(self, request: dict[str, Any]) -> dict[str, Any]:
        return {
            "pid": os.getpid(),
            "dags": len(self.engine.dagbag.dags),
            "api": self.api_url,
            "executor": self.engine.executor.describe().as_json(),
        }

    async def _op_variables_set(self, request: dict[str, Any]) -> dict[str, Any]:
        """Set a variable (`key`, `value`, `description`): see `daemon.variableops`."""
        return await self._answer_variable(request)

    async def _op_variables_delete(self, request: dict[str, Any]) -> dict[str, Any]:
        return await self._answer_variable(request)

    async def _answer_variable(self, request: dict[str, Any]) -> dict[str, Any]:
        db_path = self.engine.settings.state_dir.absolute() / DB_FILENAME
        answer = partial(answer_variable_request, db_path, request, self.engine.clock.now())
        return await anyio.to_thread.run_sync(answer)

    async def _op_ui_link(self, request: dict[str, Any]) -> dict[str, Any]:
        """A one-time sign-in link to the web UI (two minutes), for `orchestrator open`."""
        if self.ui is None or self.api_url is None:
            raise RunError(
                "the daemon serves no web UI: its HTTP API is off (`api_enabled = false`)"
            )
        code = self.ui.sessions.issue_link_code()
        return {"url": f"{self.api_url}/login/once/{code}", "expires_in": LINK_SECONDS}

    async def _op_status(self, request: dict[str, Any]) -> dict[str, Any]:
        """Counters for monitoring and benchmarks: runs driven, triggers, store writes."""
        engine = self.engine
        triggers = engine.triggerer.statistics()
        store = engine.store.statistics()
        return {
            "pid": os.getpid(),
            "active_runs": len(engine.scheduler.runs),
            "deferred_triggers": triggers.running + triggers.waiting,
            "run_triggers": len(engine.starter.host.hosted()),
            "store_transactions": store.transactions,
            "store_batches": store.batches,
            "paused": sorted(engine.starter.paused),
        }

    async def _op_trigger(self, request: dict[str, Any]) -> dict[str, Any]:
        run_id = await self.engine.trigger(
            _text(request, "dag_id"), request.get("conf"), dedup_key=request.get("dedup_key")
        )
        return {"run_id": run_id}

    async def _op_pause(self, request: dict[str, Any]) -> dict[str, Any]:
        await self.engine.set_paused(_text(request, "dag_id"), True)
        return {}

    async def _op_unpause(self, request: dict[str, Any]) -> dict[str, Any]:
        await self.engine.set_paused(_text(request, "dag_id"), False)
        return {}

    async def _op_cancel(self, request: dict[str, Any]) -> dict[str, Any]:
        await self.engine.cancel(_text(request, "run_id"))
        return {}

    async def _op_clear(self, request: dict[str, Any]) -> dict[str, Any]:
        """Clear task instances (and, unless `downstream` is false, what is downstream)."""
        task_ids, downstream = request.get("task_ids"), request.get("downstream", True)
        if not isinstance(task_ids, list) or not all(isinstance(t, str) for t in task_ids):
            raise RunError("the request needs `task_ids` as a list of task ids (strings)")
        if not isinstance(downstream, bool):
            raise RunError("the request's `downstream` must be true or false")
        keys = await self.engine.clear(_text(request, "run_id"), task_ids, downstream=downstream)
        return {"cleared": [[task_id, map_index] for _, task_id, map_index in keys]}

    async def _op_alerts_list(self, request: dict[str, Any]) -> dict[str, Any]:
        """The latest alerts with their delivery state, and every channel's status."""
        limit = request.get("limit", 50)
        if not isinstance(limit, int) or isinstance(limit, bool) or not 0 < limit <= 10_000:
            raise RunError("the request's `limit` must be a whole number from 1 to 10000")
        alerts = await self.engine.store.list_alerts(limit)
        channels = self.alerts.statuses() if self.alerts is not None else []
        return {
            "alerts": [asdict(alert) for alert in alerts],
            "channels": [asdict(channel) for channel in channels],
        }

    async def _op_alerts_test(self, request: dict[str, Any]) -> dict[str, Any]:
        """Send a test message to a configured channel now; its error if it fails."""
        if self.alerts is None:
            raise RunError("the daemon's alerts are not started yet; try again")
        try:
            alert = await self.alerts.send_test(_text(request, "channel"))
        except (OrchestratorError, OSError, TimeoutError) as error:
            raise RunError(f"the test message was not delivered: {error}") from None
        return {"alert_id": alert.alert_id}

    async def _op_backfill(self, request: dict[str, Any]) -> dict[str, Any]:
        start, end = request.get("start"), request.get("end")
        if not isinstance(start, int | float) or not isinstance(end, int | float):
            raise RunError("backfill needs `start` and `end` as seconds since the epoch")
        run_ids, skipped = await self.engine.backfill(_text(request, "dag_id"), start, end)
        return {"run_ids": run_ids, "skipped": skipped}


def _text(request: dict[str, Any], name: str) -> str:
    value = request.get(name)
    if not isinstance(value, str) or not value:
        raise RunError(f"the request needs `{name}` as a non-empty string")
    return value
