"""The time trigger fires when the clock reaches its moment, and at once if the moment passed."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import aclosing, contextmanager
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import anyio
import pytest

from orchestrator.clock import FakeClock
from orchestrator.errors import TriggerLoadError
from triggers.base import TriggerEvent, TriggerRuntime, load_trigger, set_runtime
from triggers.time import TimeTrigger, moment_of

START = 1_800_000_000.0  # FakeClock's default start


@contextmanager
def running_on(clock: FakeClock) -> Iterator[None]:
    """Make `clock` the trigger runtime's clock for this task and the tasks it starts."""
    token = set_runtime(TriggerRuntime(clock=clock))
    try:
        yield
    finally:
        token.var.reset(token)


async def first_event(trigger: TimeTrigger) -> TriggerEvent:
    async with aclosing(trigger.run()) as events:
        return await anext(events)


async def wait_until(condition: Callable[[], bool]) -> None:
    with anyio.fail_after(10):
        while not condition():
            await anyio.lowlevel.checkpoint()


async def test_fires_when_the_clock_reaches_the_moment_and_not_before() -> None:
    clock = FakeClock(START)
    trigger = TimeTrigger(moment=START + 60)
    events: list[TriggerEvent] = []

    async def consume() -> None:
        async for event in trigger.run():  # ends by itself after its one event
            events.append(event)

    with running_on(clock), anyio.fail_after(10):
        async with anyio.create_task_group() as task_group:
            task_group.start_soon(consume)
            await wait_until(lambda: clock.sleepers == 1)
            clock.advance(59.5)
            await anyio.lowlevel.checkpoint()
            assert (events, clock.sleepers) == ([], 1)
            clock.advance(0.5)
    assert events == [
        TriggerEvent(
            payload={
                "moment": START + 60,
                "moment_iso": "2027-01-15T08:01:00+00:00",
                "fired_at": START + 60,
            },
            dedup_key="time:1800000060.0",
        )
    ]


async def test_a_moment_that_already_passed_fires_at_once() -> None:
    clock = FakeClock(START)
    trigger = TimeTrigger(moment=START - 3600)
    with running_on(clock), anyio.fail_after(10):
        event = await first_event(trigger)
    assert event.payload == {
        "moment": START - 3600,
        "moment_iso": "2027-01-15T07:00:00+00:00",
        "fired_at": START,
    }
    assert event.dedup_key == "time:1799996400.0"
    assert clock.sleepers == 0


async def test_closing_a_waiting_trigger_forgets_its_timer() -> None:
    clock = FakeClock(START)
    with running_on(clock), anyio.fail_after(10):
        async with anyio.create_task_group() as task_group:
            task_group.start_soon(first_event, TimeTrigger(moment=START + 60))
            await wait_until(lambda: clock.sleepers == 1)
            task_group.cancel_scope.cancel()
    assert clock.sleepers == 0


async def test_poll_answers_none_before_the_moment_and_the_event_from_it() -> None:
    clock = FakeClock(START)
    trigger = TimeTrigger(moment=START + 10)
    with running_on(clock):
        assert await trigger.poll() is None
        clock.advance(10)
        event = await trigger.poll()
    assert event is not None
    assert event.dedup_key == "time:1800000010.0"
    assert event.payload["fired_at"] == START + 10


def test_a_round_trip_gives_the_same_trigger_and_an_int_moment_the_same_key() -> None:
    trigger = TimeTrigger(moment=1_800_000_000)
    classpath, kwargs = trigger.serialize()
    assert (classpath, kwargs) == ("triggers.time.TimeTrigger", {"moment": 1_800_000_000.0})
    assert load_trigger(classpath, kwargs) == trigger
    assert isinstance(trigger.moment, float)  # so 5 and 5.0 name one moment in dedup keys


@pytest.mark.parametrize(
    ("moment", "message"),
    [
        (float("nan"), "finite number of seconds within years 1 to 9999, not nan"),
        (float("inf"), "finite number of seconds within years 1 to 9999, not inf"),
        (1e300, "within years 1 to 9999"),
        ("2026-11-21T03:00:00+00:00", "must be seconds since the epoch (a number), not '2026"),
        (True, "must be seconds since the epoch (a number), not True"),
        (None, "must be seconds since the epoch (a number), not None"),
    ],
)
def test_a_moment_that_is_not_a_finite_number_is_refused(moment: object, message: str) -> None:
    with pytest.raises(ValueError, match=r"^moment must be") as caught:
        TimeTrigger(moment=moment)  # type: ignore[arg-type]
    assert message in str(caught.value)


def test_load_trigger_reports_a_bad_moment_as_a_load_error() -> None:
    with pytest.raises(TriggerLoadError, match=r"cannot build triggers\.time\.TimeTrigger.*nan"):
        load_trigger("triggers.time.TimeTrigger", {"moment": float("nan")})


def test_moment_of_takes_aware_datetimes_in_any_zone() -> None:
    utc = datetime(2026, 11, 21, 3, 0, tzinfo=UTC)
    paris = datetime(2026, 11, 21, 4, 0, tzinfo=ZoneInfo("Europe/Paris"))  # UTC+1 in November
    assert moment_of(utc) == moment_of(paris) == 1_795_230_000.0


def test_moment_of_takes_iso_strings_with_an_offset_or_z() -> None:
    assert moment_of("2026-11-21T03:00:00+00:00") == 1_795_230_000.0
    assert moment_of("2026-11-21T03:00:00Z") == 1_795_230_000.0
    assert moment_of("2026-11-21T05:30:00+02:30") == 1_795_230_000.0


def test_moment_of_passes_numbers_through_as_float_seconds() -> None:
    assert moment_of(1_795_230_000) == 1_795_230_000.0
    assert isinstance(moment_of(1_795_230_000), float)
    assert moment_of(12.5) == 12.5


@pytest.mark.parametrize(
    "naive", [datetime(2026, 11, 21, 3, 0), "2026-11-21T03:00:00", "2026-11-21"]
)
def test_moment_of_refuses_a_date_without_timezone_and_says_how_to_write_one(
    naive: datetime | str,
) -> None:
    with pytest.raises(ValueError, match="has no timezone") as caught:
        moment_of(naive)
    assert str(caught.value).endswith(
        "has no timezone; write e.g. 2026-11-21T03:00:00+00:00 or use ZoneInfo"
    )
    assert "2026-11-21" in str(caught.value)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("next tuesday", "'next tuesday' is not an ISO 8601 date and time; write e.g."),
        (float("nan"), "a moment must be a finite number of seconds"),
        (False, "a moment must be seconds since the epoch (a number), not False"),
    ],
)
def test_moment_of_refuses_what_is_not_a_moment(value: object, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        moment_of(value)  # type: ignore[arg-type]
    assert str(caught.value).startswith(message)


def test_every_time_trigger_waits_in_the_one_heap() -> None:
    from triggers.base import Sharing
    from triggers.time import TimeHost

    sharings = {TimeTrigger(moment=moment).sharing() for moment in (1, 2.5, 1.9e9)}
    assert sharings == {Sharing(TimeHost)}
