"""A run's timeline: bars in px, running tasks reach now, round ticks, instant tasks visible."""

from __future__ import annotations

import pytest

from orchestrator.ui.timeline import (
    MAX_TICK_INTERVALS,
    MIN_BAR_WIDTH,
    NICE_INTERVALS,
    Span,
    TimelineEntry,
    TimelineRow,
    format_offset,
    layout_timeline,
    tick_interval,
)

T0 = 1_700_000_000.0  # any epoch second; the chart only sees differences


def test_a_finished_run_spans_its_first_queue_to_its_last_end() -> None:
    timeline = layout_timeline(
        [
            TimelineEntry("extract", "success", queued_at=T0, started_at=T0 + 10, ended_at=T0 + 40),
            TimelineEntry(
                "load", "failed", queued_at=T0 + 40, started_at=T0 + 50, ended_at=T0 + 100
            ),
        ],
        now=T0 + 500,
        width=1000,
    )
    assert (timeline.start, timeline.end) == (T0, T0 + 100)
    assert timeline.rows == (
        TimelineRow(
            "extract", "success", Span(0, 100), Span(100, 300), started=True, ongoing=False
        ),
        TimelineRow("load", "failed", Span(400, 100), Span(500, 500), started=True, ongoing=False),
    )


def test_a_running_task_extends_to_now() -> None:
    timeline = layout_timeline(
        [
            TimelineEntry("done", "success", queued_at=T0, started_at=T0, ended_at=T0 + 20),
            TimelineEntry("busy", "running", queued_at=T0 + 20, started_at=T0 + 20),
        ],
        now=T0 + 80,
        width=800,
    )
    assert timeline.end == T0 + 80
    busy = timeline.rows[1]
    assert (busy.running, busy.ongoing) == (Span(200, 600), True)
    assert busy.queued is None  # it started the moment it was queued


def test_a_task_still_waiting_for_a_slot_is_queued_until_now() -> None:
    timeline = layout_timeline(
        [TimelineEntry("waiting", "queued", queued_at=T0)], now=T0 + 10, width=100
    )
    (row,) = timeline.rows
    assert (row.queued, row.running, row.started) == (Span(0, 100), None, False)


def test_a_task_that_took_no_time_is_still_visible() -> None:
    timeline = layout_timeline(
        [
            TimelineEntry("instant", "success", queued_at=T0, started_at=T0, ended_at=T0),
            TimelineEntry("last", "success", queued_at=T0, started_at=T0 + 60, ended_at=T0 + 60),
        ],
        now=T0 + 60,
        width=600,
    )
    first, last = (row.running for row in timeline.rows)
    assert first == Span(0, MIN_BAR_WIDTH)
    # At the right edge, the bar moves left to stay inside the chart.
    assert last == Span(600 - MIN_BAR_WIDTH, MIN_BAR_WIDTH)


def test_a_run_where_everything_was_instant_still_has_a_scale() -> None:
    timeline = layout_timeline(
        [TimelineEntry("a", "success", queued_at=T0, started_at=T0, ended_at=T0)],
        now=T0,
        width=300,
    )
    assert timeline.end - timeline.start == 1.0
    assert timeline.rows[0].running == Span(0, MIN_BAR_WIDTH)


def test_tasks_never_started_are_marked_and_do_not_stretch_the_chart() -> None:
    timeline = layout_timeline(
        [
            TimelineEntry("ran", "failed", queued_at=T0, started_at=T0, ended_at=T0 + 10),
            TimelineEntry("skipped", "upstream_failed", ended_at=T0 + 3_600),
            TimelineEntry("pending", "none"),
        ],
        now=T0 + 7_200,
        width=100,
    )
    assert timeline.end == T0 + 10
    never = timeline.rows[1:]
    assert [(row.started, row.queued, row.running) for row in never] == [(False, None, None)] * 2
    assert [row.state for row in never] == ["upstream_failed", "none"]


def test_a_task_cancelled_while_queued_waits_until_it_ended() -> None:
    timeline = layout_timeline(
        [TimelineEntry("gone", "cancelled", queued_at=T0, ended_at=T0 + 5)],
        now=T0 + 100,
        width=50,
    )
    (row,) = timeline.rows
    assert (row.queued, row.running, row.started) == (Span(0, 50), None, False)
    assert timeline.end == T0 + 5


def test_an_empty_run_is_an_empty_chart_at_now() -> None:
    timeline = layout_timeline([], now=T0, width=400)
    assert (timeline.start, timeline.rows) == (T0, ())
    assert [tick.label for tick in timeline.ticks] == ["+0s", "+1s"]


@pytest.mark.parametrize(
    ("span", "interval"),
    [
        (1, 1),
        (6, 1),
        (7, 5),
        (45, 10),
        (100, 30),
        (300, 60),
        (1_800, 300),
        (5_400, 900),
        (4 * 3600, 3600),
        (30 * 3600, 21600),
        (3 * 86400, 86400),
        (30 * 86400, 5 * 86400),
    ],
)
def test_the_tick_interval_is_round_and_gives_a_handful_of_ticks(span: int, interval: int) -> None:
    assert tick_interval(span) == interval
    assert span / interval <= MAX_TICK_INTERVALS


@pytest.mark.parametrize("seconds", [1, 3, 59, 61, 599, 3_601, 10_000, 100_000, 1_000_000])
def test_ticks_are_round_and_within_the_width(seconds: int) -> None:
    timeline = layout_timeline(
        [TimelineEntry("t", "running", queued_at=T0, started_at=T0)],
        now=T0 + seconds,
        width=640,
    )
    interval = timeline.ticks[1].offset
    assert interval in NICE_INTERVALS or interval % 86400 == 0
    assert [tick.offset for tick in timeline.ticks] == [
        step * interval for step in range(len(timeline.ticks))
    ]
    assert 2 <= len(timeline.ticks) <= MAX_TICK_INTERVALS + 1
    assert all(0 <= tick.x <= 640 for tick in timeline.ticks)
    assert timeline.ticks[-1].offset + interval > seconds  # the last tick is the last that fits


def test_ticks_are_placed_in_proportion() -> None:
    timeline = layout_timeline(
        [TimelineEntry("t", "success", queued_at=T0, started_at=T0, ended_at=T0 + 120)],
        now=T0 + 120,
        width=600,
    )
    assert [(tick.x, tick.label) for tick in timeline.ticks] == [
        (0, "+0s"),
        (150, "+30s"),
        (300, "+1m"),
        (450, "+1m30s"),
        (600, "+2m"),
    ]


@pytest.mark.parametrize(
    ("seconds", "label"),
    [
        (0, "+0s"),
        (30, "+30s"),
        (300, "+5m"),
        (5_400, "+1h30m"),
        (3_600, "+1h"),
        (21_600, "+6h"),
        (86_400, "+1d"),
        (108_000, "+1d6h"),
    ],
)
def test_offsets_are_labelled_in_their_largest_units(seconds: int, label: str) -> None:
    assert format_offset(seconds) == label


def test_a_chart_narrower_than_a_bar_is_refused() -> None:
    with pytest.raises(ValueError, match="width of at least"):
        layout_timeline([], now=T0, width=1)
