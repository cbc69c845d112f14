"""`triggering_asset_events` (Airflow 3) and `triggering_dataset_events` (Airflow 2) in a task's
context: the asset updates that started its run, by asset.

A run an asset update starts holds the updates in `conf["events"]` (a producer's DAG, run and
task, and when it succeeded); here each becomes an `AssetEvent` as Airflow's tasks read them.
Runs that no asset started (scheduled, manual) get an empty mapping, as in Airflow.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

from orchestrator.airflow_compat.assets import Asset


class AssetEvent:
    """One update of `asset`: who made it (`source_dag_id`, ...) and when (`timestamp`)."""

    def __init__(self, payload: Mapping[str, Any]) -> None:
        self.asset = Asset(str(payload["asset"]))
        self.uri = self.asset.uri
        self.extra: dict[str, Any] = {}  # updates carry no extra here
        self.source_dag_id = payload.get("dag_id")
        self.source_task_id = payload.get("task_id")
        self.source_run_id = payload.get("run_id")
        self.source_map_index = payload.get("map_index", -1)
        self.source_dag_run = SimpleNamespace(dag_id=self.source_dag_id, run_id=self.source_run_id)
        moment = payload.get("updated_at")
        self.timestamp = None if moment is None else datetime.fromtimestamp(moment, UTC)

    def __repr__(self) -> str:
        return f"AssetEvent(uri={self.uri!r}, source={self.source_dag_id}.{self.source_task_id})"


class TriggeringAssetEvents(Mapping[Asset, list[AssetEvent]]):
    """The run's asset updates by `Asset`; an asset's URI works as a key too."""

    def __init__(self, events: list[AssetEvent]) -> None:
        self._events: dict[Asset, list[AssetEvent]] = {}
        for event in events:
            self._events.setdefault(event.asset, []).append(event)

    def __getitem__(self, key: object) -> list[AssetEvent]:
        uri = key if isinstance(key, str) else getattr(key, "uri", key)
        return self._events[Asset(str(uri))]

    def __iter__(self) -> Iterator[Asset]:
        return iter(self._events)

    def __len__(self) -> int:
        return len(self._events)


def triggering_events(conf: Mapping[str, Any]) -> dict[str, Any]:
    """The context's two spellings: by Asset (Airflow 3), by URI (Airflow 2's datasets)."""
    payloads = conf.get("events")
    events = [
        AssetEvent(payload)
        for payload in (payloads if isinstance(payloads, list) else ())
        if isinstance(payload, Mapping) and isinstance(payload.get("asset"), str)
    ]
    by_asset = TriggeringAssetEvents(events)
    return {
        "triggering_asset_events": by_asset,
        "triggering_dataset_events": {asset.uri: found for asset, found in by_asset.items()},
    }
