"""Airflow's `Asset` (Airflow 3) and `Dataset` (Airflow 2), and their `&` / `|` conditions.

Both are native assets: a task's `outlets=[asset]` records an update that starts the runs of
DAGs scheduled on it. `schedule=[a, b]` and `a & b` wait until every asset was updated (the
native `all_of`), `a | b` runs on each update of either (`any_of`), as in Airflow.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from orchestrator.authoring.assets import AllOf, AnyOf, AssetCondition, all_of, any_of
from orchestrator.authoring.assets import Asset as NativeAsset


@dataclass(frozen=True, init=False)
class Asset(NativeAsset):
    """`Asset("s3://bucket/key")` or `Asset(name=..., uri=...)`."""

    def __init__(
        self,
        uri: str | None = None,
        name: str | None = None,
        group: str = "",
        extra: dict[str, Any] | None = None,
        **_: Any,
    ) -> None:
        object.__setattr__(self, "uri", uri or name)
        self.__post_init__()


Dataset = Asset


@dataclass(frozen=True, init=False)
class AssetAll(AllOf):
    """`AssetAll(a, b)`, as `a & b`: a run once every one was updated."""

    def __init__(self, *objects: Any) -> None:
        object.__setattr__(self, "parts", all_of(*objects).parts)


@dataclass(frozen=True, init=False)
class AssetAny(AnyOf):
    """`AssetAny(a, b)`, as `a | b`: a run on each update of any of them."""

    def __init__(self, *objects: Any) -> None:
        object.__setattr__(self, "parts", any_of(*objects).parts)


def split_schedule(schedule: Any) -> tuple[str | timedelta | None, AssetCondition | None]:
    """An Airflow schedule as (cron, preset or timedelta; the assets that start runs).

    A list of assets is Airflow's AND: a run once every one of them was updated.
    """
    if schedule is None or isinstance(schedule, str | timedelta):
        if schedule == "@continuous":
            raise ValueError("schedule='@continuous' is not supported; use a cron or timedelta")
        return schedule, None
    if isinstance(schedule, NativeAsset):
        return None, any_of(schedule)
    if isinstance(schedule, AssetCondition):
        return None, schedule
    if isinstance(schedule, list | tuple) and all(isinstance(s, NativeAsset) for s in schedule):
        return None, all_of(*schedule)
    raise TypeError(
        f"schedule {schedule!r} is not supported: use None, a cron string or preset "
        "('@daily', '@once'), a timedelta, or assets (Airflow's timetables are not supported)"
    )


__all__ = ("Asset", "AssetAll", "AssetAny", "Dataset")
