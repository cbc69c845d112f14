"""The daemon's connection to a Dask scheduler: made, watched, and made again with backoff.

The daemon never depends on Dask being up. While the scheduler cannot be reached it keeps
running: tries bound for Dask wait (their log says why), `status` says what is wrong, and
connecting is tried again after 1, 2, 4 ... 30 s. On every connection, before any try is
submitted, the connection is set up the same way:

- the scheduler's `allowed-failures` is set to 0, so a task whose worker died comes back to
  us as a lost try (one of *our* counted retries), never run again by Dask behind our back;
  this is scheduler-wide: give the daemon a scheduler of its own;
- the try logs' topic is subscribed to;
- the workers get a plugin that kills the tries' processes when a worker closes (as a
  worker does when it loses its scheduler), instead of letting them run on unseen;
- the workers stop every try of this daemon's they still run (the reconcile): nothing was
  submitted on this connection yet, and what was submitted on an earlier one is lost (the
  daemon restarted, or the scheduler went away) and is run again by our retry policy, so no
  copy of a try outlives its connection.

Without an address, a `LocalCluster` sized to the machine is started (worker processes on
127.0.0.1, no dashboard) and closed with the daemon.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import anyio
import dask
from anyio.abc import TaskStatus
from distributed import Client, LocalCluster

from orchestrator.errors import error_line
from orchestrator.execution.dask_worker import LOG_TOPIC, TryReaper, stop_unknown_tries

logger = logging.getLogger("orchestrator.executor")

#: Seconds one attempt to reach the scheduler may take.
CONNECT_TIMEOUT = 5.0
FIRST_BACKOFF = 1.0
MAX_BACKOFF = 30.0
#: Seconds a reconcile or a cancel on the workers may take (an unresponsive worker is skipped).
WORKER_CALL_TIMEOUT = 10.0
#: How often a try waiting for the client to reconnect by itself looks again (it has no event).
RECONNECT_POLL = 0.05


def _no_failures_allowed(dask_scheduler: Any) -> int:
    dask_scheduler.allowed_failures = 0
    return int(dask_scheduler.allowed_failures)


class DaskConnection:
    """One Dask client at a time for the executor; `run` keeps it connected."""

    def __init__(
        self,
        address: str | None,
        *,
        owner: str,
        on_log: Callable[[Any], None],
    ) -> None:
        self.address = address
        self._status = f"connecting to the Dask scheduler at {address}" if address else "starting"
        self._owner = owner
        self._on_log = on_log
        self._client: Client | None = None
        self._report: asyncio.Task[None] | None = None  # the client's, as set up by `_serve`
        self._ready = anyio.Event()

    @property
    def client(self) -> Client | None:
        """The connected client, or None while there is none (or it is reconnecting)."""
        client = self._client
        # Between losing the scheduler and giving up on it, the client reconnects by itself
        # (status "connecting"); a task sent meanwhile would be lost with the old scheduler,
        # and one sent once it is back but before the reconcile would be stopped by it.
        if client is None or client.status != "running":
            return None
        return client if client._handle_report_task is self._report else None

    @property
    def status(self) -> str:
        """One line: connected (to what, how many workers), or why not and what happens next."""
        client = self._client
        if client is None:
            return self._status
        if self.client is None:
            return f"lost the Dask scheduler at {self.address}; reconnecting"
        workers = self.workers
        return f"connected to the Dask scheduler at {self.address} ({workers} workers)"

    @property
    def workers(self) -> int | None:
        """How many workers the scheduler has, while connected."""
        client = self.client
        if client is None:
            return None
        # The asynchronous client's cached identity (refreshed every few seconds): totals only.
        info = client.scheduler_info()
        return int(info.get("n_workers", len(info.get("workers", {}))))

    async def wait_connected(self) -> Client:
        """The client, once there is one that is connected."""
        while (client := self.client) is None:
            if self._client is not None:  # reconnecting by itself: no event says when it is done
                await anyio.sleep(RECONNECT_POLL)
            else:
                await self._ready.wait()
        return client

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Connect, serve, and connect again whenever the scheduler is lost, until cancelled."""
        task_status.started()
        if self.address is not None:
            await self._connect_forever(self.address)
            return
        with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
            cluster = await LocalCluster(
                asynchronous=True,
                processes=True,
                threads_per_worker=1,
                host="127.0.0.1",
                # No dashboard, but Dask's HTTP server (health checks) on a free port: on
                # its default, 8787, it would fail to start beside another cluster.
                scheduler_kwargs={"dashboard": False},
                dashboard_address="127.0.0.1:0",
            )
        try:
            self.address = str(cluster.scheduler_address)
            await self._connect_forever(self.address)
        finally:
            with anyio.CancelScope(shield=True):
                await cluster.close()  # type: ignore[misc]  # an awaitable when asynchronous

    async def _connect_forever(self, address: str) -> None:
        delay = FIRST_BACKOFF
        while True:
            try:
                client = await self._connect(address)
            except (OSError, TimeoutError) as error:
                self._status = (
                    f"cannot reach the Dask scheduler at {address} ({error_line(error)}); "
                    f"tasks wait; next attempt in {delay:g} s"
                )
                logger.warning("%s", self._status)
                await anyio.sleep(delay)
                delay = min(delay * 2, MAX_BACKOFF)
                continue
            delay = FIRST_BACKOFF
            try:
                await self._serve(client, address)
            finally:
                self._client = None
                self._ready = anyio.Event()
                with anyio.CancelScope(shield=True), anyio.move_on_after(CONNECT_TIMEOUT):
                    await client.close()
            self._status = f"lost the Dask scheduler at {address}; reconnecting"
            logger.warning("%s", self._status)

    async def _connect(self, address: str) -> Client:
        client = Client(address, asynchronous=True, timeout=CONNECT_TIMEOUT, set_as_default=False)
        try:
            with anyio.fail_after(CONNECT_TIMEOUT * 2):
                await client
        except BaseException:
            with anyio.CancelScope(shield=True), anyio.move_on_after(CONNECT_TIMEOUT):
                await client.close()
            raise
        return client

    async def _serve(self, client: Client, address: str) -> None:
        """Set the connection up, then wait until it is lost (the client's report task ends)."""
        while True:
            await self._set_up(client)
            report = self._report = client._handle_report_task
            if report is None:
                return
            self._client = client
            self._ready.set()
            logger.info("%s", self.status)
            await asyncio.wait([report])
            # The client reconnects by itself when the scheduler comes back soon enough; then
            # it has a new report task, and the connection is set up again.
            if client.status != "running" or client._handle_report_task in (None, report):
                return
            self._client = None
            self._ready = anyio.Event()

    async def _set_up(self, client: Client) -> None:
        client.subscribe_topic(LOG_TOPIC, self._on_log)
        await client.run_on_scheduler(_no_failures_allowed)
        await client.register_plugin(TryReaper())
        with anyio.move_on_after(WORKER_CALL_TIMEOUT):
            stale = await client.run(stop_unknown_tries, self._owner, [], on_error="ignore")
            for worker, tokens in (stale or {}).items():
                if tokens:
                    logger.warning(
                        "stopped %d try(s) on Dask worker %s that this daemon does not run "
                        "(left by an earlier daemon or a lost connection)",
                        len(tokens),
                        worker,
                    )
