"""The triggerer: hosts triggers as tasks in the engine's event loop, thousands at a time.

```python
async with anyio.create_task_group() as tg:
    triggerer = Triggerer(tg, capacity=100_000, report=on_outcome, runtime=runtime)
    triggerer.arm(key, FileTrigger(directory="data/incoming", pattern="*.csv"))
```

A trigger that offers `sharing()` waits in a host shared with others of its kind
(`shared_hosts`): a time trigger is an entry in one timer heap, a file trigger a registration
in its folder's watch, a few hundred bytes each. Any other trigger runs in its own task, under
the engine's task group, with its own cancel scope: a suspended coroutine, a task and a scope
(about 3 KiB), still not a thread or a slot. The first event, a raise, or an end without an
event is reported once through `report`; the trigger is then closed (its `finally:` runs).
`disarm` cancels a trigger that is no longer needed (its task instance was cancelled or timed
out), with the same cleanup. Beyond `capacity`, triggers wait in order for a place, still
deferred in the store.
"""

from __future__ import annotations

import logging
from collections import Counter, deque
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable, Iterable
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any, cast

import anyio
from anyio.abc import TaskGroup

from orchestrator.errors import error_line
from orchestrator.waiting.long_lived import LongLived
from orchestrator.waiting.shared_hosts import SharedHosts
from orchestrator.waiting.watchdog import LoopWatchdog
from triggers.base import Trigger, TriggerEvent, TriggerRuntime, set_runtime

logger = logging.getLogger("orchestrator.triggerer")

TaskKey = tuple[str, str, int]


@dataclass(frozen=True)
class Fired:
    """A trigger's first event."""

    event: TriggerEvent


@dataclass(frozen=True)
class Failed:
    """A trigger raised, or ended without an event: one line saying which and why."""

    error: str


TriggerOutcome = Fired | Failed
Report = Callable[[TaskKey, TriggerOutcome], None]
SaveCursor = Callable[[TaskKey, Any], Awaitable[None]]


@dataclass(frozen=True)
class TriggererStatistics:
    """A snapshot of the triggerer's counters."""

    running: int  # triggers hosted now
    waiting: int  # triggers queued for a place (over capacity)
    fired: int  # triggers that delivered their event
    failed: int  # triggers that raised or ended without an event
    blocked_seconds: float  # time the event loop was blocked past the watchdog's threshold
    blocked_by: str | None  # the trigger (or task) that blocked it last
    # The same by kind (the trigger's class name: a bounded set, fit for a metric's label).
    running_by_kind: dict[str, int] = field(default_factory=dict)
    waiting_by_kind: dict[str, int] = field(default_factory=dict)
    fired_by_kind: dict[str, int] = field(default_factory=dict)
    failed_by_kind: dict[str, int] = field(default_factory=dict)
    shared: int = 0  # of `running`, those waiting in a shared host (see `shared_hosts`)
    settling: int = 0  # of those, the ones whose wait is still being set up (watch, listing)


class Triggerer:
    """Runs triggers in the loop, within a capacity; reports what each one ended with."""

    def __init__(
        self,
        task_group: TaskGroup,
        *,
        capacity: int,
        report: Report,
        runtime: TriggerRuntime,
        save_cursor: SaveCursor | None = None,
        watchdog: LoopWatchdog | None = None,
    ) -> None:
        self._tg = task_group
        self.capacity = capacity
        self._report = report
        self._runtime = runtime
        self._save_cursor = save_cursor
        self._watchdog = watchdog
        self._scopes: dict[TaskKey, anyio.CancelScope] = {}
        self._triggers: dict[TaskKey, Trigger] = {}
        self._running: Counter[str] = Counter()  # by kind, kept as they come and go
        self._waiting: deque[tuple[TaskKey, Trigger, Any]] = deque()
        self._fired: Counter[str] = Counter()  # by kind
        self._failed: Counter[str] = Counter()
        self._shared = SharedHosts(
            task_group, runtime=runtime, ended=self._shared_ended, watchdog=watchdog
        )
        self._long_lived = LongLived()

    def arm_all(self, armings: Iterable[tuple[TaskKey, Trigger, Any]]) -> None:
        """`arm` each `(key, trigger, cursor)`; after a bulk, the collector leaves them be."""
        count = 0
        for key, trigger, cursor in armings:
            self.arm(key, trigger, cursor)
            count += 1
        self._long_lived.armed(count, len(self._triggers))

    def arm(self, key: TaskKey, trigger: Trigger, cursor: Any = None) -> None:
        """Start hosting `trigger` for `key` now, or as soon as there is a place."""
        self.disarm(key)
        if len(self._triggers) >= self.capacity:
            self._waiting.append((key, trigger, cursor))
            return
        self._start(key, trigger, cursor)

    def disarm(self, key: TaskKey) -> None:
        """Stop hosting the trigger of `key` (if any); its cleanup runs."""
        scope = self._scopes.get(key)
        if scope is not None:
            scope.cancel()
        elif key in self._triggers:
            # Shared, or started but not yet running (`_host` sees it gone).
            self._shared.discard(key, self._forget(key))
            self._admit_waiting()
        elif self._waiting:  # not rebuilt for each of 100,000 new keys arming at once
            self._waiting = deque(entry for entry in self._waiting if entry[0] != key)

    def statistics(self) -> TriggererStatistics:
        watchdog = self._watchdog
        return TriggererStatistics(
            running=len(self._triggers),
            waiting=len(self._waiting),
            fired=self._fired.total(),
            failed=self._failed.total(),
            blocked_seconds=watchdog.blocked_seconds if watchdog else 0.0,
            blocked_by=watchdog.blocked_by if watchdog else None,
            running_by_kind=dict(+self._running),
            waiting_by_kind=dict(Counter(kind_of(entry[1]) for entry in self._waiting)),
            fired_by_kind=dict(self._fired),
            failed_by_kind=dict(self._failed),
            shared=self._shared.hosted(),
            settling=self._shared.settling(),
        )

    def _start(self, key: TaskKey, trigger: Trigger, cursor: Any) -> None:
        self._triggers[key] = trigger
        self._running[kind_of(trigger)] += 1
        sharing = trigger.sharing()
        if sharing is None:
            self._tg.start_soon(self._host, key, trigger, cursor)
        else:
            self._shared.add(key, trigger, sharing)

    def _shared_ended(self, token: Hashable, result: TriggerEvent | Exception) -> None:
        """A shared host ended a trigger's wait: report it as its own task would have."""
        key = cast(TaskKey, token)
        trigger = self._forget(key)
        if isinstance(result, TriggerEvent):
            outcome: TriggerOutcome = Fired(result)
        else:
            logger.warning("trigger %s failed: %s", trigger.describe(), error_line(result))
            outcome = Failed(f"trigger {kind_of(trigger)} failed: {error_line(result)}")
        self._deliver(key, kind_of(trigger), outcome)
        self._admit_waiting()

    # -- hosting one trigger ----------------------------------------------------------------------

    async def _host(self, key: TaskKey, trigger: Trigger, cursor: Any) -> None:
        if self._triggers.get(key) is not trigger:
            return  # disarmed before it started
        set_runtime(self._runtime_for(key, cursor))
        if self._watchdog is not None:
            self._watchdog.name_current_task(partial(_task_name, trigger, key))
        scope = anyio.CancelScope()
        try:
            with scope:
                self._scopes[key] = scope
                outcome = await self._first_outcome(trigger)
                self._deliver(key, kind_of(trigger), outcome)
        finally:
            if self._scopes.get(key) is scope:
                del self._scopes[key]
            if self._triggers.get(key) is trigger:
                self._forget(key)
            self._admit_waiting()

    async def _first_outcome(self, trigger: Trigger) -> TriggerOutcome:
        events = trigger.run()
        try:
            async for event in events:
                return Fired(event)
        except Exception as error:
            logger.warning("trigger %s failed", trigger.describe(), exc_info=True)
            return Failed(f"trigger {type(trigger).__name__} failed: {error_line(error)}")
        finally:
            await close_events(events)
        return Failed(f"trigger {trigger.describe()} ended without an event")

    def _deliver(self, key: TaskKey, kind: str, outcome: TriggerOutcome) -> None:
        if isinstance(outcome, Fired):
            self._fired[kind] += 1
        else:
            self._failed[kind] += 1
        self._report(key, outcome)

    def _runtime_for(self, key: TaskKey, cursor: Any) -> TriggerRuntime:
        save = self._save_cursor
        if save is None:
            return replace(self._runtime, cursor=cursor)

        async def save_cursor(value: Any) -> None:
            await save(key, value)

        return replace(self._runtime, cursor=cursor, save_cursor=save_cursor)

    def _forget(self, key: TaskKey) -> Trigger:
        trigger = self._triggers.pop(key)
        self._running[kind_of(trigger)] -= 1
        self._long_lived.ended(len(self._triggers))
        return trigger

    def _admit_waiting(self) -> None:
        while self._waiting and len(self._triggers) < self.capacity:
            self._start(*self._waiting.popleft())


async def close_events(events: AsyncIterator[TriggerEvent]) -> None:
    """Close the generator now (its `finally:` runs here, not whenever it is collected)."""
    aclose = getattr(events, "aclose", None)
    if aclose is not None:
        with anyio.CancelScope(shield=True):
            try:
                await aclose()
            except Exception:
                logger.warning("closing a trigger raised", exc_info=True)


def kind_of(trigger: Trigger) -> str:
    """A trigger's kind, as statistics and metrics count it: its class name."""
    return type(trigger).__name__


def _task_name(trigger: Trigger, key: TaskKey) -> str:
    run_id, task_id, map_index = key
    element = f"[{map_index}]" if map_index >= 0 else ""
    return f"{trigger.describe()} for {task_id}{element} of run {run_id}"
