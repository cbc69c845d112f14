"""Fire at a moment: the time trigger, and `moment_of` to turn a date into epoch seconds.

A moment that passed while the process was down fires at once on start (nothing lost while
down), and the event's `dedup_key` names the moment, so firing it twice is seen as one event.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Hashable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import ClassVar

from orchestrator.clock import Deadlines
from triggers.base import (
    Ending,
    SharedHost,
    Sharing,
    Trigger,
    TriggerEvent,
    TriggerRuntime,
    current_runtime,
)

# Seconds well inside years 1 to 9999 (years 5 to 9987): a date surely exists for them.
_SURELY_DATED = (-62_000_000_000.0, 253_000_000_000.0)
_EXAMPLE = "write e.g. 2026-11-21T03:00:00+00:00 or use ZoneInfo"


@dataclass(frozen=True, kw_only=True)
class TimeTrigger(Trigger):
    """Fire once when the clock reaches `moment` (seconds since the epoch, UTC).

    Waits on the runtime clock, so a test moves time with `FakeClock.advance` and the engine
    can hold thousands of these without a thread each.
    """

    moment: float

    fields_checked_as_json: ClassVar[bool] = True  # a finite float: below

    def __post_init__(self) -> None:
        # Stored as a float so that 5 and 5.0 give one dedup key.
        object.__setattr__(self, "moment", _finite_seconds(self.moment, what="moment"))

    async def run(self) -> AsyncGenerator[TriggerEvent, None]:
        clock = current_runtime().clock
        await clock.sleep_until(self.moment)
        yield self._event(clock.now())

    async def poll(self) -> TriggerEvent | None:
        now = current_runtime().clock.now()
        return self._event(now) if now >= self.moment else None

    def sharing(self) -> Sharing:
        return _IN_THE_HEAP

    def _event(self, fired_at: float) -> TriggerEvent:
        payload = {"moment": self.moment, "moment_iso": iso_of(self.moment), "fired_at": fired_at}
        return TriggerEvent(payload=payload, dedup_key=f"time:{self.moment!r}")


class TimeHost(SharedHost[TimeTrigger]):
    """Every time trigger of a triggerer in one heap, served by one task sleeping on the clock.

    A waiting time trigger costs a heap entry, not a sleeping task. Entries are not removed
    when a trigger is discarded: one comes due and is skipped, unless they pile up (many
    discarded long before their moment), when the heap is rebuilt.
    """

    def __init__(self, key: Hashable, runtime: TriggerRuntime, ending: Ending) -> None:
        super().__init__(key, runtime, ending)
        self._moments: Deadlines[Hashable] = Deadlines(runtime.clock)

    def _added(self, token: Hashable, trigger: TimeTrigger) -> None:
        self._moments.add(trigger.moment, token)

    def _discarded(self, token: Hashable, trigger: TimeTrigger) -> None:
        if not self.triggers:
            self._moments.interrupt()  # serve() ends
        elif len(self._moments) > 2 * len(self.triggers) + 1000:
            self._moments.keep(self.triggers.__contains__)

    async def serve(self) -> None:
        clock = self.runtime.clock
        while not self.finished():
            for token in await self._moments.next_due():
                trigger = self.triggers.get(token)
                # Not a leftover of a trigger discarded (and perhaps armed again since).
                if trigger is not None and trigger.moment <= (now := clock.now()):
                    self.end(token, trigger._event(now))


#: Where every time trigger waits: made once, not once per trigger armed.
_IN_THE_HEAP = Sharing(TimeHost)


def moment_of(value: datetime | str | float | int) -> float:
    """Epoch seconds for a timezone-aware datetime, an ISO 8601 string, or a number of seconds.

    A date without a timezone is refused rather than guessed: the host's zone differs between
    a laptop and a server, and a wrong guess fires hours early or late.
    """
    if isinstance(value, datetime):
        return _aware(value, shown=value.isoformat()).timestamp()
    if isinstance(value, str):
        return _aware(_parse_iso(value), shown=value).timestamp()
    return _finite_seconds(value, what="a moment")


def iso_of(moment: float) -> str:
    """The ISO 8601 form of epoch seconds, in UTC (`2026-11-21T03:00:00+00:00`)."""
    return datetime.fromtimestamp(moment, tz=UTC).isoformat()


def _parse_iso(text: str) -> datetime:
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{text!r} is not an ISO 8601 date and time; {_EXAMPLE}") from None


def _aware(moment: datetime, *, shown: str) -> datetime:
    if moment.utcoffset() is None:
        raise ValueError(f"{shown!r} has no timezone; {_EXAMPLE}")
    return moment


def _finite_seconds(value: object, *, what: str) -> float:
    # bool is an int to Python, but `moment=True` is always a mistake.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{what} must be seconds since the epoch (a number), not {value!r}")
    seconds = float(value)
    if _SURELY_DATED[0] < seconds < _SURELY_DATED[1]:
        return seconds  # no need to make a date to know there is one: 100,000 re-arms
    try:
        iso_of(seconds)  # NaN, infinity and years past 9999 have no date to show or wait for
    except (OverflowError, ValueError, OSError):
        raise ValueError(
            f"{what} must be a finite number of seconds within years 1 to 9999, not {value!r}"
        ) from None
    return seconds
