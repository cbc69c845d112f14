"""The shared hosts of a triggerer: many triggers of one kind waiting in one task.

A trigger whose `sharing()` names a host (every time trigger: one timer heap; file triggers on
one folder: one watch) is added to that host instead of getting a task and a cancel scope of
its own. A host is made on first use, served by one task of the triggerer's task group, and
ends once it holds no trigger; the next trigger of its kind gets a new one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Hashable
from typing import Any

from anyio.abc import TaskGroup

from orchestrator.waiting.watchdog import LoopWatchdog
from triggers.base import (
    SharedHost,
    Sharing,
    Trigger,
    TriggerEvent,
    TriggerRuntime,
    set_runtime,
)

logger = logging.getLogger("orchestrator.triggerer")

Ended = Callable[[Hashable, "TriggerEvent | Exception"], None]


class SharedHosts:
    """Adds triggers to their hosts, starts the hosts, and fails a broken host's triggers."""

    def __init__(
        self,
        task_group: TaskGroup,
        *,
        runtime: TriggerRuntime,
        ended: Ended,
        watchdog: LoopWatchdog | None,
    ) -> None:
        self._tg = task_group
        self._runtime = runtime
        self._ended = ended
        self._watchdog = watchdog
        self._hosts: dict[Sharing, SharedHost[Any]] = {}

    def add(self, token: Hashable, trigger: Trigger, sharing: Sharing) -> None:
        host = self._hosts.get(sharing)
        if host is None or host.closed:
            host = self._hosts[sharing] = sharing.host(sharing.key, self._runtime, self._ended)
            self._tg.start_soon(self._serve, sharing, host)
        host.add(token, trigger)

    def discard(self, token: Hashable, trigger: Trigger) -> None:
        sharing = trigger.sharing()
        host = None if sharing is None else self._hosts.get(sharing)
        if host is not None:
            host.discard(token)

    def hosted(self) -> int:
        return sum(len(host.triggers) for host in self._hosts.values())

    def settling(self) -> int:
        """Triggers whose host is still setting up their wait (a watch, a first listing)."""
        return sum(len(host.triggers) - host.waiting() for host in self._hosts.values())

    async def _serve(self, sharing: Sharing, host: SharedHost[Any]) -> None:
        set_runtime(self._runtime)
        if self._watchdog is not None:
            self._watchdog.name_current_task(host.describe)
        try:
            await host.serve()
        except Exception as error:
            logger.warning("%s failed; so do its triggers", host.describe(), exc_info=True)
            host.end_all(error)
        finally:
            if self._hosts.get(sharing) is host:
                del self._hosts[sharing]
