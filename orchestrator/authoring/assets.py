"""Assets: named data a task produces and a DAG can run on (data-aware scheduling).

```python
features = Asset("s3://lake/features/daily")

@task(outlets=[features])
def build_features(): ...

with DAG("train", run_on=features): ...   # a run each time `build_features` succeeds
with DAG("report", run_on=all_of(features, labels)): ...   # once both were updated
```

`run_on=[a, b]` is `any_of(a, b)`: each update of either starts a run. `all_of(a, b)` (or
`a & b`) waits until every one of them was updated since its DAG's last run from them; the
run's `conf["events"]` holds every update it waited for. Conditions nest: `a | (b & c)`.

An asset is only a name (a URI by convention): the engine records an update when a task
that lists it in `outlets` succeeds, in the same transaction as that success, so an update is
never lost and never counted twice.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

_URI = re.compile(r"^[^\s]{1,1000}$")


@dataclass(frozen=True)
class Asset:
    """A piece of data, named by a URI: `Asset("s3://bucket/prefix")`, `Asset("sales.daily")`."""

    uri: str

    def __post_init__(self) -> None:
        if not isinstance(self.uri, str) or not _URI.match(self.uri):
            raise ValueError(
                "an Asset needs a name or URI of 1-1000 characters without spaces, "
                f"got {self.uri!r}"
            )

    def __str__(self) -> str:
        return self.uri

    def __and__(self, other: object) -> AllOf:
        return all_of(self, other)

    def __or__(self, other: object) -> AnyOf:
        return any_of(self, other)


@dataclass(frozen=True)
class AssetCondition:
    """Assets (or conditions) combined: `AllOf` needs every part, `AnyOf` one of them."""

    parts: tuple[Asset | AssetCondition, ...]

    def assets(self) -> tuple[Asset, ...]:
        """Every asset the condition names, once each, in order."""
        found: list[Asset] = []
        for part in self.parts:
            found.extend(part.assets() if isinstance(part, AssetCondition) else (part,))
        return tuple(dict.fromkeys(found))

    def satisfied(self, updated: set[str]) -> bool:
        """True when the assets whose URIs are in `updated` are enough for a run."""
        raise NotImplementedError

    def waits(self) -> bool:
        """True when some update may have to wait for another (an `AllOf` somewhere)."""
        return any(isinstance(part, AssetCondition) and part.waits() for part in self.parts)

    def __and__(self, other: object) -> AllOf:
        return all_of(self, other)

    def __or__(self, other: object) -> AnyOf:
        return any_of(self, other)


class AllOf(AssetCondition):
    """Every part was updated: `all_of(a, b)` or `a & b`."""

    def satisfied(self, updated: set[str]) -> bool:
        return all(_holds(part, updated) for part in self.parts)

    def waits(self) -> bool:
        return True

    def __str__(self) -> str:
        return "(" + " & ".join(str(part) for part in self.parts) + ")"


class AnyOf(AssetCondition):
    """One part was updated: `any_of(a, b)`, `a | b`, or a plain list in `run_on`."""

    def satisfied(self, updated: set[str]) -> bool:
        return any(_holds(part, updated) for part in self.parts)

    def __str__(self) -> str:
        return "(" + " | ".join(str(part) for part in self.parts) + ")"


def all_of(*parts: object) -> AllOf:
    """A run once every one of `parts` (Assets, URIs or conditions) was updated."""
    return AllOf(_parts(parts, "all_of"))


def any_of(*parts: object) -> AnyOf:
    """A run for each update of any of `parts` (Assets, URIs or conditions)."""
    return AnyOf(_parts(parts, "any_of"))


def _holds(part: Asset | AssetCondition, updated: set[str]) -> bool:
    if isinstance(part, AssetCondition):
        return part.satisfied(updated)
    return part.uri in updated


def _parts(parts: Iterable[object], what: str) -> tuple[Asset | AssetCondition, ...]:
    found: list[Asset | AssetCondition] = []
    for part in parts:
        if isinstance(part, str):
            part = Asset(part)
        if not isinstance(part, Asset | AssetCondition):
            raise TypeError(f"{what}() takes Assets, URI strings and conditions, got {part!r}")
        found.append(part)
    if not found:
        raise ValueError(f"{what}() needs at least one asset")
    return tuple(found)


def as_assets(values: object, *, what: str) -> tuple[Asset, ...]:
    """`values` (an Asset, a URI string, or a list of them) as a tuple of assets."""
    items = values if isinstance(values, list | tuple | set | frozenset) else (values,)
    assets = []
    for item in items:
        if isinstance(item, str):
            item = Asset(item)
        if not isinstance(item, Asset):
            raise TypeError(f"{what} must be Assets or URI strings, got {item!r}")
        assets.append(item)
    return tuple(dict.fromkeys(assets))
