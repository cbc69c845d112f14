"""Airflow's `Asset` (Airflow 3) and `Dataset` (Airflow 2), and their `&` / `|` conditions.

Both are native assets: a task's `outlets=[asset]` records an update that starts the runs of
DAGs scheduled on it. `schedule=[a, b]` and `a & b` wait for every asset in Airflow; here each
update of any of them starts a run (see the README's support table).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

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

    def __and__(self, other: Any) -> AssetAll:
        return AssetAll(self, other)

    def __or__(self, other: Any) -> AssetAny:
        return AssetAny(self, other)


Dataset = Asset


class _Condition:
    def __init__(self, *objects: Any) -> None:
        self.objects = objects

    def assets(self) -> list[NativeAsset]:
        found: list[NativeAsset] = []
        for item in self.objects:
            found.extend(item.assets() if isinstance(item, _Condition) else [item])
        return found

    def __and__(self, other: Any) -> AssetAll:
        return AssetAll(self, other)

    def __or__(self, other: Any) -> AssetAny:
        return AssetAny(self, other)


class AssetAll(_Condition):
    """Every asset updated (Airflow); here, any update starts a run."""


class AssetAny(_Condition):
    """Any asset updated."""


def split_schedule(schedule: Any) -> tuple[str | timedelta | None, list[NativeAsset]]:
    """An Airflow schedule as (cron, preset or timedelta; assets that start runs)."""
    if schedule is None or isinstance(schedule, str | timedelta):
        if schedule == "@continuous":
            raise ValueError("schedule='@continuous' is not supported; use a cron or timedelta")
        return schedule, []
    if isinstance(schedule, NativeAsset):
        return None, [schedule]
    if isinstance(schedule, _Condition):
        return None, schedule.assets()
    if isinstance(schedule, list | tuple) and all(isinstance(s, NativeAsset) for s in schedule):
        return None, list(schedule)
    raise TypeError(
        f"schedule {schedule!r} is not supported: use None, a cron string or preset "
        "('@daily', '@once'), a timedelta, or assets (Airflow's timetables are not supported)"
    )


__all__ = ("Asset", "AssetAll", "AssetAny", "Dataset")
