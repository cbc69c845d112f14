"""Where each bar of a run's timeline goes: a Gantt chart of its tasks, in px, as pure geometry.

Each row has up to two spans: queued (waiting for a slot, from `queued_at` until it started)
and running (from `started_at` until it ended, or until `now` while it runs). Times are epoch
seconds, as the store keeps them. The chart runs from the earliest time shown (x = 0) to the
latest (x = `width`); the axis gets a handful of ticks at a round interval, labelled as offsets
from the start ("+30s", "+5m", "+1h30m"). A task that took no time still gets a bar
`MIN_BAR_WIDTH` wide, so it can be seen and clicked; a task that never started has no running
span and says so (`started` is False).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

MIN_BAR_WIDTH = 2.0
MAX_TICK_INTERVALS = 6  # at most this many intervals, so at most 7 ticks counting the start
#: Tick intervals in seconds, shortest first; past the last, whole days.
NICE_INTERVALS = (1, 5, 10, 30, 60, 300, 900, 3600, 21600, 86400)
_UNITS = (("d", 86400), ("h", 3600), ("m", 60), ("s", 1))


@dataclass(frozen=True)
class TimelineEntry:
    """One task of a run, as the store has it; `ended_at` is None while it runs."""

    label: str
    state: str
    queued_at: float | None = None
    started_at: float | None = None
    ended_at: float | None = None


@dataclass(frozen=True)
class Span:
    """A horizontal stretch of a row, in px from the chart's left edge."""

    x: float
    width: float


@dataclass(frozen=True)
class TimelineRow:
    """One task's bars. `queued` is None if it never waited; `running` None if never started."""

    label: str
    state: str
    queued: Span | None
    running: Span | None
    started: bool
    ongoing: bool  # started and not ended: its running span reaches `now`


@dataclass(frozen=True)
class AxisTick:
    x: float
    offset: float  # seconds after the chart's start
    label: str


@dataclass(frozen=True)
class Timeline:
    """The chart: `start`/`end` the epoch seconds at x = 0 and x = `width`."""

    width: float
    start: float
    end: float
    rows: tuple[TimelineRow, ...]
    ticks: tuple[AxisTick, ...]


def layout_timeline(entries: Iterable[TimelineEntry], now: float, width: float) -> Timeline:
    """The chart of `entries` (rows in the order given) `width` px wide, as of `now`."""
    if width < MIN_BAR_WIDTH:
        raise ValueError(f"a timeline needs a width of at least {MIN_BAR_WIDTH} px, not {width}")
    entries = tuple(entries)
    start, end = _extent(entries, now)
    scale = _Scale(start, max(end - start, 1.0), width)
    rows = tuple(_row(entry, now, scale) for entry in entries)
    return Timeline(width, start, start + scale.span, rows, _ticks(scale))


def _extent(entries: tuple[TimelineEntry, ...], now: float) -> tuple[float, float]:
    """The earliest and latest moments a bar touches; `now` too if a bar is still open."""
    shown = [e for e in entries if e.queued_at is not None or e.started_at is not None]
    moments = [t for e in shown for t in (e.queued_at, e.started_at, e.ended_at) if t is not None]
    if any(_is_open(entry) for entry in shown):
        moments.append(now)
    return min(moments, default=now), max(moments, default=now)


def _is_open(entry: TimelineEntry) -> bool:
    """Running, or queued and still waiting: its last bar reaches `now`."""
    waiting = entry.queued_at is not None and entry.started_at is None
    return entry.ended_at is None and (waiting or entry.started_at is not None)


@dataclass(frozen=True)
class _Scale:
    """Seconds to px: `start` at x = 0, `start + span` at x = `width`."""

    start: float
    span: float
    width: float

    def x(self, moment: float) -> float:
        return round(min(self.width, max(0.0, (moment - self.start) / self.span * self.width)), 2)


def _row(entry: TimelineEntry, now: float, scale: _Scale) -> TimelineRow:
    started = entry.started_at is not None
    ongoing = started and entry.ended_at is None
    queued_until = next(t for t in (entry.started_at, entry.ended_at, now) if t is not None)
    queued = None
    if entry.queued_at is not None and queued_until > entry.queued_at:
        queued = _span(entry.queued_at, queued_until, scale, minimum=0.0)
    running = None
    if entry.started_at is not None:
        until = now if entry.ended_at is None else entry.ended_at
        running = _span(entry.started_at, until, scale, minimum=MIN_BAR_WIDTH)
    return TimelineRow(entry.label, entry.state, queued, running, started, ongoing)


def _span(begin: float, end: float, scale: _Scale, *, minimum: float) -> Span:
    """From `begin` to `end`, at least `minimum` px wide, kept inside the chart."""
    left, right = scale.x(begin), scale.x(max(begin, end))
    width = max(right - left, minimum)
    return Span(min(left, round(scale.width - width, 2)), round(width, 2))


def tick_interval(span: float) -> int:
    """The shortest round interval (seconds) that cuts `span` into at most a handful of parts."""
    for interval in NICE_INTERVALS:
        if span / interval <= MAX_TICK_INTERVALS:
            return interval
    return 86400 * math.ceil(span / 86400 / MAX_TICK_INTERVALS)


def _ticks(scale: _Scale) -> tuple[AxisTick, ...]:
    interval = tick_interval(scale.span)
    offsets = [step * interval for step in range(int(scale.span // interval) + 1)]
    return tuple(
        AxisTick(scale.x(scale.start + offset), offset, format_offset(offset)) for offset in offsets
    )


def format_offset(seconds: float) -> str:
    """An offset from the start, largest units first: "+0s", "+45s", "+1m30s", "+1d6h"."""
    remaining = round(seconds)
    parts = []
    for unit, size in _UNITS:
        count, remaining = divmod(remaining, size)
        if count:
            parts.append(f"{count}{unit}")
    return "+" + ("".join(parts) or "0s")
