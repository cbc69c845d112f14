"""Hosts the DAGs' run triggers: each runs for as long as its DAG is active, event after event.

A task's trigger ends at its first event (see `triggerer.py`); a run trigger never does: a
`FileTrigger` on `data/incoming` yields every file that lands, for months. Each event is
handed to the engine (`on_event`), which records it and starts its run in one transaction.

A run trigger that raises (its folder was deleted, S3 is unreachable) does not stop the
daemon or the DAG: the error is reported (`on_status`, shown by `orchestrator triggers list`)
and the trigger is started again after a backoff, up to five minutes. Scanning on start (file)
and resuming from the saved cursor (S3) find what happened meanwhile; dedup keys drop repeats.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

import anyio
from anyio.abc import TaskGroup

from orchestrator.clock import Clock
from orchestrator.errors import error_line
from orchestrator.waiting.triggerer import close_events
from triggers.base import Trigger, TriggerEvent, TriggerRuntime, set_runtime

logger = logging.getLogger("orchestrator.sources")

SourceKey = tuple[str, str]  # (dag_id, source name)
OnEvent = Callable[[SourceKey, TriggerEvent], None]
OnStatus = Callable[[SourceKey, str | None], None]
SaveCursor = Callable[[SourceKey, Any], Awaitable[None]]

FIRST_BACKOFF = 1.0
MAX_BACKOFF = 300.0


class SourceHost:
    """Runs run triggers in the event loop and restarts the ones that fail, with backoff."""

    def __init__(
        self,
        task_group: TaskGroup,
        *,
        runtime: TriggerRuntime,
        on_event: OnEvent,
        on_status: OnStatus,
        save_cursor: SaveCursor,
    ) -> None:
        self._tg = task_group
        self._runtime = runtime
        self._on_event = on_event
        self._on_status = on_status
        self._save_cursor = save_cursor
        self._scopes: dict[SourceKey, anyio.CancelScope] = {}
        self._cursors: dict[SourceKey, Any] = {}

    @property
    def clock(self) -> Clock:
        return self._runtime.clock

    def hosted(self) -> set[SourceKey]:
        return set(self._scopes)

    def arm(self, key: SourceKey, trigger: Trigger, cursor: Any = None) -> None:
        """Start hosting `trigger` (replacing what `key` hosted before)."""
        self.disarm(key)
        scope = anyio.CancelScope()
        self._scopes[key] = scope
        self._cursors[key] = cursor
        self._tg.start_soon(self._host, key, trigger, scope)

    def disarm(self, key: SourceKey) -> None:
        """Stop hosting `key`'s trigger; its cleanup runs."""
        scope = self._scopes.pop(key, None)
        if scope is not None:
            scope.cancel()
        self._cursors.pop(key, None)

    def disarm_all(self) -> None:
        for key in list(self._scopes):
            self.disarm(key)

    async def _host(self, key: SourceKey, trigger: Trigger, scope: anyio.CancelScope) -> None:
        failures = 0
        with scope:
            while True:
                set_runtime(self._runtime_for(key))
                started = self.clock.now()
                error, delivered = await self._follow(key, trigger)
                if delivered or self.clock.now() - started >= MAX_BACKOFF:
                    # It worked for a while: a failure months later starts the backoff over
                    # rather than waiting as long as the last of a string of failures did.
                    failures = 0
                failures += 1
                delay = min(MAX_BACKOFF, FIRST_BACKOFF * 2 ** (failures - 1))
                self._on_status(key, f"{error}; trying again in {delay:g} s")
                await self.clock.sleep_until(self.clock.now() + delay)

    async def _follow(self, key: SourceKey, trigger: Trigger) -> tuple[str, bool]:
        """Pass on every event until the trigger fails or ends: why it stopped, and whether
        it passed on any event."""
        events = trigger.run()
        delivered = False
        self._on_status(key, None)
        try:
            async for event in events:
                self._on_event(key, event)
                delivered = True
        except Exception as error:
            logger.warning("run trigger %s of DAG %s failed", key[1], key[0], exc_info=True)
            return f"failed: {error_line(error)}", delivered
        finally:
            await close_events(events)
        return "ended without being asked to", delivered

    def _runtime_for(self, key: SourceKey) -> TriggerRuntime:
        async def save_cursor(value: Any) -> None:
            self._cursors[key] = value
            await self._save_cursor(key, value)

        return replace(self._runtime, cursor=self._cursors.get(key), save_cursor=save_cursor)
