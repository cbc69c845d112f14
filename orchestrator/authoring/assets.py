"""Assets: named data a task produces and a DAG can run on (data-aware scheduling).

```python
features = Asset("s3://lake/features/daily")

@task(outlets=[features])
def build_features(): ...

with DAG("train", run_on=features): ...   # a run each time `build_features` succeeds
```

An asset is only a name (a URI by convention): the engine records an update when a task
that lists it in `outlets` succeeds, in the same transaction as that success, so an update is
never lost and never counted twice.
"""

from __future__ import annotations

import re
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
