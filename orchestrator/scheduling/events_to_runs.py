"""Events to runs: one run per event, or the events of a batch window or debounce in one run.

Every event is recorded with `UNIQUE (dag_id, dedup_key)`; the event row, its run and the
trigger's cursor commit in one transaction, so an event is never lost and never starts two
runs, across restarts and `kill -9`. Events that wait for their window are stored with no run
yet; a restart finds them (`list_pending_events`) and starts their run when the window ends.

Asset updates and finished runs become events of the DAGs that run on them in the same
transaction as the success or the finish that caused them. A DAG run on `all_of(a, b)` keeps
its asset updates waiting, like a window's, until they satisfy the condition; then they start
one run together.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any

from orchestrator.authoring.assets import Asset
from orchestrator.authoring.dag import DAG
from orchestrator.authoring.run_sources import DagFinished, source_name
from orchestrator.changes import Change, EventRecorded, RunChanged, TaskChanged, endings
from orchestrator.scheduling.active_runs import Transitions
from orchestrator.state import TaskState
from orchestrator.store.records import EventRecord

#: Creates a queued run in the batch and hands it to the scheduler; returns its id.
NewRun = Callable[..., str]


@dataclass(frozen=True)
class Incoming:
    """An event for a DAG, from one of its run triggers or from inside the engine."""

    dag_id: str
    source: str
    dedup_key: str
    payload: dict[str, Any]


def event_conf(payloads: list[dict[str, Any]], *, single: bool) -> dict[str, Any]:
    """A run's conf: a lone event's fields at the top (`conf["path"]`), and always `events`."""
    if single:
        return {**payloads[0], "events": payloads}
    return {"events": payloads}


class EventRuns:
    """Decides, for each event, whether it starts a run now or waits for its window."""

    def __init__(self, new_run: NewRun) -> None:
        self._new_run = new_run
        self.pending: dict[str, list[EventRecord]] = defaultdict(list)  # dag_id -> waiting events
        self._by_asset: dict[str, list[str]] = defaultdict(list)  # uri -> DAGs run on it
        self._by_dag: dict[str, list[tuple[str, DagFinished]]] = defaultdict(list)

    def index(self, dags: Iterable[DAG]) -> None:
        """Learn which DAGs run on which assets and DAGs (again, after a reload)."""
        self._by_asset.clear()
        self._by_dag.clear()
        for dag in dags:
            for asset in dag.starts.assets:
                self._by_asset[asset.uri].append(dag.dag_id)
            for finished in dag.starts.dags:
                self._by_dag[finished.dag_id].append((dag.dag_id, finished))

    def restore(self, events: list[EventRecord]) -> None:
        """Events recorded before a restart that still wait for their window."""
        for event in events:
            self.pending[event.dag_id].append(event)

    def accept(self, dag: DAG, incoming: Incoming, tx: Transitions) -> str | float | None:
        """Record the event; return the run it started, when its DAG's window ends, or None
        while it waits for the other updates its DAG's asset condition needs."""
        record = EventRecord(
            dag_id=dag.dag_id,
            dedup_key=incoming.dedup_key,
            payload=incoming.payload,
            received_at=tx.now,
            source=incoming.source,
        )
        conditional = dag.starts.condition is not None and "asset" in incoming.payload
        if not dag.starts.gathers and not conditional:
            conf = event_conf([incoming.payload], single=True)
            run_id = self._new_run(
                dag, conf, tx.batch, run_type="event", dedup_key=incoming.dedup_key
            )
            record = replace(record, run_id=run_id)
        tx.batch.add_events([record])
        tx.changes.append(_recorded(record, tx.now))
        if record.run_id is not None:
            return record.run_id
        self.pending[dag.dag_id].append(record)
        if conditional:
            return self.flush(dag, tx) if self.due(dag) is not None else None
        return self.due(dag)

    def due(self, dag: DAG) -> float | None:
        """When the DAG's waiting events should start their run (None: not yet, or none wait)."""
        waiting = self.pending.get(dag.dag_id)
        if not waiting:
            return None
        starts = dag.starts
        if starts.condition is not None:
            updated = {str(event.payload.get("asset")) for event in waiting}
            return waiting[0].received_at if starts.condition.satisfied(updated) else None
        candidates = []
        if starts.batch_window is not None:
            candidates.append(waiting[0].received_at + starts.batch_window)
        if starts.debounce is not None:
            candidates.append(waiting[-1].received_at + starts.debounce)
        return min(candidates) if candidates else waiting[0].received_at

    def flush(self, dag: DAG, tx: Transitions) -> str | None:
        """Start one run with every waiting event of the DAG; return its id."""
        waiting = self.pending.pop(dag.dag_id, [])
        if not waiting:
            return None
        conf = event_conf([event.payload for event in waiting], single=False)
        first = waiting[0].dedup_key
        run_id = self._new_run(
            dag, conf, tx.batch, run_type="event", dedup_key=f"batch:{len(waiting)}:{first}"
        )
        tx.batch.assign_events(dag.dag_id, [event.dedup_key for event in waiting], run_id)
        tx.changes.extend(_recorded(replace(event, run_id=run_id), tx.now) for event in waiting)
        return run_id

    # -- events from inside the engine -----------------------------------------------------------

    def follow(
        self, changes: Iterable[Change], dag_of_run: Callable[[str], DAG | None]
    ) -> list[Incoming]:
        """The events that these committed-together changes cause: assets updated, runs ended."""
        found: list[Incoming] = []
        for change in endings(changes):
            if isinstance(change, TaskChanged) and change.state is TaskState.SUCCESS:
                found.extend(self._asset_updates(change, dag_of_run(change.run_id)))
            elif isinstance(change, RunChanged) and change.state.finished:
                found.extend(self._runs_ended(change))
        return found

    def _asset_updates(self, change: TaskChanged, dag: DAG | None) -> list[Incoming]:
        if dag is None or change.task_id not in dag.tasks:
            return []
        found = []
        for asset in dag.tasks[change.task_id].options.outlets:
            payload = _asset_payload(asset, dag.dag_id, change)
            # The try number: a cleared task that succeeds again updates the asset again.
            key = (
                f"asset:{asset.uri}:{change.run_id}:{change.task_id}:{change.map_index}"
                f":{change.try_number}"
            )
            for consumer in self._by_asset.get(asset.uri, ()):
                found.append(Incoming(consumer, source_name(asset), key, payload))
        return found

    def _runs_ended(self, change: RunChanged) -> list[Incoming]:
        found = []
        for consumer, finished in self._by_dag.get(change.dag_id, ()):
            if change.state.value in finished.states:
                payload = {
                    "dag_id": change.dag_id,
                    "run_id": change.run_id,
                    "state": change.state.value,
                }
                # When it ended: a cleared run that ends again is a new event, not a replay.
                key = f"dag:{change.dag_id}:{change.run_id}:{change.at!r}"
                found.append(Incoming(consumer, source_name(finished), key, payload))
        return found


def _recorded(event: EventRecord, now: float) -> EventRecorded:
    return EventRecorded(
        dag_id=event.dag_id,
        source=event.source,
        dedup_key=event.dedup_key,
        run_id=event.run_id,
        at=now,
        received_at=event.received_at,
    )


def _asset_payload(asset: Asset, dag_id: str, change: TaskChanged) -> dict[str, Any]:
    return {
        "asset": asset.uri,
        "dag_id": dag_id,
        "run_id": change.run_id,
        "task_id": change.task_id,
        "map_index": change.map_index,
        "updated_at": change.at,  # when the producing task succeeded
    }
