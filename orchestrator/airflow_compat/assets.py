"""Airflow's `Asset` (Airflow 3) and `Dataset` (Airflow 2), and their `&` / `|` conditions.

Both are native assets: a task's `outlets=[asset]` records an update that starts the runs of
DAGs scheduled on it. `schedule=[a, b]` and `a & b` wait until every asset was updated (the
native `all_of`), `a | b` runs on each update of either (`any_of`), as in Airflow.
"""

from __future__ import annotations

from dataclasses import dataclass
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


def split_assets(assets: Any, *, strict: bool = True) -> AssetCondition | None:
    """Assets a DAG runs on as a condition: an asset, `a & b`, `a | b`, or a list (all of them).

    Anything else is a TypeError, or None when not `strict` (the caller tries other meanings).
    """
    if isinstance(assets, NativeAsset):
        return any_of(assets)
    if isinstance(assets, AssetCondition):
        return assets
    if (
        isinstance(assets, list | tuple)
        and assets
        and all(isinstance(each, NativeAsset) for each in assets)
    ):
        return all_of(*assets)
    if strict:
        raise TypeError(f"expected assets (an Asset, a list of them, a & b, a | b); got {assets!r}")
    return None


__all__ = ("Asset", "AssetAll", "AssetAny", "Dataset")
