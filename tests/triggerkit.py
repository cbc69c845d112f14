"""Triggers for tests of the triggerer and of deferral: the test decides when they fire.

A `GateTrigger` waits until the test opens its gate (`open_gate(name, payload)`), so a test
can fire exactly the trigger it wants, when it wants, without sleeping. The others fail in each
way a trigger can: raise, end without an event, block the loop.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import anyio

from sensors.base import BaseSensor, SensorArgs
from triggers.base import Trigger, TriggerEvent

_gates: dict[str, anyio.Event] = {}
_changed: anyio.Event | None = None
_payloads: dict[str, Any] = {}
#: Names of the gate triggers whose cleanup (`finally:`) ran, and of those running now.
cleaned_up: list[str] = []
waiting: set[str] = set()


def _gate(name: str) -> anyio.Event:
    if name not in _gates:
        _gates[name] = anyio.Event()
    return _gates[name]


def open_gate(name: str, payload: Any = None) -> None:
    _payloads[name] = payload
    _gate(name).set()


def reset() -> None:
    global _changed
    _changed = None
    _gates.clear()
    _payloads.clear()
    cleaned_up.clear()
    waiting.clear()


@dataclass(frozen=True, kw_only=True)
class GateTrigger(Trigger):
    """Fires with the gate's payload when the test opens the gate `name`."""

    name: str

    async def run(self) -> AsyncIterator[TriggerEvent]:
        waiting.add(self.name)
        _announce()
        try:
            await _gate(self.name).wait()
            yield TriggerEvent(_payloads.get(self.name), dedup_key=self.name)
        finally:
            waiting.discard(self.name)
            cleaned_up.append(self.name)
            _announce()

    async def poll(self) -> TriggerEvent | None:
        if _gate(self.name).is_set():
            return TriggerEvent(_payloads.get(self.name), dedup_key=self.name)
        return None


class GateSensor(BaseSensor):
    """Waits for the gate `gate`: checks it with `poll()` in reschedule and poke modes."""

    def __init__(self, *, task_id: str, gate: Any, **options: Any) -> None:
        super().__init__(task_id=task_id, fields={"gate": gate}, **options)

    def make_trigger(self, args: SensorArgs) -> Trigger:
        return GateTrigger(name=args["gate"])


@dataclass(frozen=True, kw_only=True)
class RaisingTrigger(Trigger):
    message: str = "the source is gone"

    async def run(self) -> AsyncIterator[TriggerEvent]:
        raise RuntimeError(self.message)
        yield  # an async generator, like every trigger


@dataclass(frozen=True, kw_only=True)
class SilentTrigger(Trigger):
    """Ends without an event."""

    async def run(self) -> AsyncIterator[TriggerEvent]:
        return
        yield


@dataclass(frozen=True, kw_only=True)
class BlockingTrigger(Trigger):
    """Blocks the event loop (the mistake the watchdog is there to catch), then fires."""

    seconds: float

    async def run(self) -> AsyncIterator[TriggerEvent]:
        time.sleep(self.seconds)  # blocking on purpose
        yield TriggerEvent({"blocked": self.seconds})


async def until_waiting(*names: str) -> None:
    """Wait until the gate triggers `names` are all waiting (woken by each change, deadline)."""
    await _until(lambda: set(names) <= waiting)


async def until_cleaned_up(name: str) -> None:
    """Wait until the gate trigger `name` has been closed (its `finally:` ran)."""
    await _until(lambda: name in cleaned_up)


async def _until(condition: Callable[[], bool]) -> None:
    global _changed
    with anyio.fail_after(60):  # generous: a loaded CI machine is slow
        while not condition():
            _changed = anyio.Event()
            await _changed.wait()


def _announce() -> None:
    """Wake whoever waits in `_until`: the gates' state changed."""
    if _changed is not None:
        _changed.set()
