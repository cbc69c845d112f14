"""What starts a DAG's runs by itself: its schedule and its run triggers, checked at its line.

```python
with DAG(
    "retrain",
    schedule="0 3 * * *", timezone="Europe/Paris", start_date="2026-01-01", catchup=False,
    run_on=[FileTrigger(directory="data/incoming", pattern="*.csv"), features_asset],
    debounce=30,
):
    ...
```

A run trigger is a trigger (the same classes tasks defer on: a new file, a new S3 object),
an `Asset` (a task somewhere updated it), a condition on assets (`all_of(a, b)`, `a & b`) or
`DagFinished` (another DAG's run ended). The items of `run_on` are alternatives: every event
starts one run, unless `batch_window` or `debounce` gathers the events into fewer runs, or an
`all_of` holds an asset's updates until the others it names were updated too.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from orchestrator.authoring.assets import AnyOf, Asset, AssetCondition
from orchestrator.authoring.moments import parse_moment
from orchestrator.authoring.retry import seconds
from orchestrator.authoring.schedules import Schedule, load_timezone, parse_schedule
from orchestrator.state import RunState
from triggers.base import Trigger, classpath_of

_FINISHED = tuple(state.value for state in RunState if state.finished)


@dataclass(frozen=True)
class DagFinished:
    """A run trigger: a run of `dag_id` ended in one of `states` (by default, success)."""

    dag_id: str
    states: tuple[str, ...] = ("success",)

    def __post_init__(self) -> None:
        if not isinstance(self.dag_id, str) or not self.dag_id:
            raise ValueError(f"DagFinished needs the id of a DAG, got {self.dag_id!r}")
        states = (self.states,) if isinstance(self.states, str) else tuple(self.states)
        for state in states:
            if state not in _FINISHED:
                raise ValueError(
                    f"DagFinished states must be among {', '.join(_FINISHED)}, got {state!r}"
                )
        object.__setattr__(self, "states", states)


RunSource = Trigger | Asset | DagFinished


def source_name(source: RunSource) -> str:
    """The one line naming a run trigger in the store, `triggers list` and `events list`."""
    if isinstance(source, Asset):
        return f"asset {source.uri}"
    if isinstance(source, DagFinished):
        return f"dag {source.dag_id} {'/'.join(source.states)}"
    return source.describe()


@dataclass(frozen=True)
class RunStarts:
    """A DAG's schedule and run triggers, parsed; `DAG.starts` holds one."""

    schedule: Schedule | None = None
    timezone: str = "UTC"
    start: float | None = None  # start_date as seconds since the epoch
    end: float | None = None  # end_date
    catchup: bool | int = False
    triggers: tuple[Trigger, ...] = ()
    assets: tuple[Asset, ...] = ()
    dags: tuple[DagFinished, ...] = ()
    #: When set, an asset update starts a run only once this holds for the updates waiting.
    condition: AssetCondition | None = None
    batch_window: float | None = None  # gather events for this long after the first one
    debounce: float | None = None  # start once no event came for this long

    @property
    def gathers(self) -> bool:
        """True when events wait (batch window or debounce) instead of each starting a run."""
        return self.batch_window is not None or self.debounce is not None

    @property
    def sources(self) -> tuple[RunSource, ...]:
        return (*self.triggers, *self.assets, *self.dags)

    @property
    def schedule_text(self) -> str:
        """The schedule as people say it, or "-" when there is none."""
        return self.schedule.description if self.schedule is not None else "-"

    @property
    def source_names(self) -> list[str]:
        """What starts runs besides the schedule: one name per run trigger."""
        return [source_name(source) for source in self.sources]


def parse_run_starts(
    *,
    schedule: str | timedelta | Schedule | None,
    timezone: str,
    start_date: Any,
    end_date: Any,
    catchup: bool | int,
    run_on: Any,
    batch_window: float | timedelta | None,
    debounce: float | timedelta | None,
) -> RunStarts:
    """Check everything a DAG says about how its runs start; raises ValueError or TypeError."""
    load_timezone(timezone)  # a typo is an error before a schedule ever uses it
    if schedule is None and start_date is None and end_date is None:
        start = end = None
    else:
        start, end = _moments(start_date, end_date, timezone)
    parsed = None
    if schedule is not None:
        parsed = parse_schedule(schedule, timezone=timezone, anchor=start)
    triggers, assets, dags = _split_sources(run_on)
    condition = _condition(run_on)
    if condition is not None and (batch_window is not None or debounce is not None):
        raise ValueError(
            "all_of already gathers asset updates into one run; batch_window and debounce "
            "cannot be used with it"
        )
    return RunStarts(
        schedule=parsed,
        timezone=timezone,
        start=start,
        end=end,
        catchup=_catchup(catchup),
        triggers=triggers,
        assets=assets,
        dags=dags,
        condition=condition,
        batch_window=_window("batch_window", batch_window),
        debounce=_window("debounce", debounce),
    )


def _moments(start_date: Any, end_date: Any, timezone: str) -> tuple[float | None, float | None]:
    start = parse_moment(start_date, timezone=timezone, what="start_date")
    end = parse_moment(end_date, timezone=timezone, what="end_date")
    if start is not None and end is not None and end < start:
        raise ValueError(f"end_date ({end_date}) is before start_date ({start_date})")
    return start, end


def _split_sources(
    run_on: Any,
) -> tuple[tuple[Trigger, ...], tuple[Asset, ...], tuple[DagFinished, ...]]:
    items: Iterable[Any] = run_on if isinstance(run_on, list | tuple) else (run_on,)
    triggers: list[Trigger] = []
    assets: list[Asset] = []
    dags: list[DagFinished] = []
    for item in items:
        if item is None:
            continue
        if isinstance(item, Trigger):
            _check_trigger(item)
            triggers.append(item)
        elif isinstance(item, Asset):
            assets.append(item)
        elif isinstance(item, AssetCondition):
            assets.extend(item.assets())
        elif isinstance(item, DagFinished):
            dags.append(item)
        else:
            raise TypeError(
                "run_on takes triggers (FileTrigger, S3Trigger, ...), Assets, all_of/any_of "
                "and DagFinished, "
                f"got {item!r}"
            )
    sources: list[RunSource] = [*triggers, *assets, *dags]
    names = [source_name(source) for source in sources]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ValueError(f"run_on names the same source twice: {', '.join(duplicates)}")
    return tuple(triggers), tuple(assets), tuple(dags)


def _condition(run_on: Any) -> AssetCondition | None:
    """The asset condition of `run_on` (its items are alternatives), if any update may wait."""
    items = run_on if isinstance(run_on, list | tuple) else (run_on,)
    parts = [item for item in items if isinstance(item, Asset | AssetCondition)]
    condition = AnyOf(tuple(parts)) if parts else None
    return condition if condition is not None and condition.waits() else None


def _check_trigger(trigger: Trigger) -> None:
    """The daemon rebuilds run triggers from their JSON form: check it can, now."""
    if "<locals>" in classpath_of(type(trigger)):
        raise TypeError(
            f"{type(trigger).__name__} is defined inside a function; a run trigger's class "
            "must be importable (define it at the top level of a module)"
        )
    trigger.serialize()  # raises if a field is not JSON


def _catchup(value: Any) -> bool | int:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value >= 1:
        return value
    raise TypeError(
        "catchup must be False (only the latest missed interval runs), True (every missed "
        f"interval) or a whole number N >= 1 (the latest N), got {value!r}"
    )


def _window(name: str, value: float | timedelta | None) -> float | None:
    try:
        result = seconds(value)
    except (TypeError, ValueError) as error:
        raise type(error)(f"{name}: {error}") from None
    if result is not None and not 0 < result < math.inf:  # NaN fails both
        raise ValueError(f"{name} must be a finite number of seconds above 0, got {value!r}")
    return result
