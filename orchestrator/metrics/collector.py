"""Every gauge, read from the engine's own state at scrape time: nothing is kept by hand.

The counters here (triggers fired, loop blocked, store transactions, events deduplicated) are
the engine's own statistics, read the same way: their parts count them already, and a second
copy kept for Prometheus could only drift from the first.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, TypeVar

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    Metric,
    SummaryMetricFamily,
)
from prometheus_client.registry import Collector

from orchestrator.metrics.kinds import source_kind

if TYPE_CHECKING:
    from orchestrator.scheduling.engine import Engine

#: A sample's label values, in the order of its family's label names.
Labels = Sequence[str]


class EngineCollector(Collector):
    """Reads runs, slots, triggers, the loop watchdog and the store's counters at each scrape."""

    def __init__(self, engine: Engine, *, started_at: float) -> None:
        self._engine = engine
        self._started_at = started_at

    def collect(self) -> Iterator[Metric]:
        started = [((), self._started_at)]
        yield _gauge(
            "orchestrator_start_time_seconds", "When the engine started (Unix time)", started
        )
        yield from self._runs()
        yield from self._slots()
        yield from self._triggers()
        yield from self._run_triggers()
        yield from self._loop()
        yield from self._store()

    def _runs(self) -> Iterator[Metric]:
        scheduler, dag_ids = self._engine.scheduler, sorted(self._engine.dagbag.dags)
        queued = [((dag_id,), scheduler.queued_runs(dag_id)) for dag_id in dag_ids]
        running = [((dag_id,), scheduler.running_runs(dag_id)) for dag_id in dag_ids]
        yield _gauge("orchestrator_runs_queued", "Runs waiting to start, per DAG", queued, "dag_id")
        yield _gauge("orchestrator_runs_running", "Runs running, per DAG", running, "dag_id")
        duplicates = self._engine.starter.duplicate_events
        yield _counter(
            "orchestrator_events_deduplicated",
            "Events seen before (a rescan, a redelivery): recorded once, no second run",
            [((dag_id,), count) for dag_id, count in sorted(duplicates.items())],
            "dag_id",
        )

    def _slots(self) -> Iterator[Metric]:
        scheduler = self._engine.scheduler
        free_overall = max(0, scheduler.slots - scheduler.slots_used)
        used: list[tuple[Labels, float]] = []
        free: list[tuple[Labels, float]] = []
        for pool, size in sorted(self._engine.settings.pool_slots().items()):
            taken = scheduler.pool_used[pool]
            used.append(((pool,), taken))
            free.append(((pool,), max(0, min(size - taken, free_overall))))
        yield _gauge("orchestrator_worker_slots_used", "Worker slots taken, by pool", used, "pool")
        yield _gauge(
            "orchestrator_worker_slots_free", "Worker slots a task could take now", free, "pool"
        )

    def _triggers(self) -> Iterator[Metric]:
        triggerer = self._engine.triggerer
        stats = triggerer.statistics()
        yield _by_kind(
            GaugeMetricFamily,
            "orchestrator_triggers_waiting",
            "Deferred tasks' triggers hosted now, waiting for their event, by trigger class",
            stats.running_by_kind,
        )
        yield _by_kind(
            GaugeMetricFamily,
            "orchestrator_triggers_queued",
            "Triggers waiting for a place in the triggerer (over its capacity)",
            stats.waiting_by_kind,
        )
        yield _by_kind(
            CounterMetricFamily,
            "orchestrator_triggers_fired",
            "Triggers that delivered their event",
            stats.fired_by_kind,
        )
        yield _by_kind(
            CounterMetricFamily,
            "orchestrator_triggers_failed",
            "Triggers that raised or ended without an event",
            stats.failed_by_kind,
        )
        left = max(0, triggerer.capacity - stats.running)
        yield _gauge(
            "orchestrator_triggerer_capacity_left", "More triggers it can host now", [((), left)]
        )

    def _run_triggers(self) -> Iterator[Metric]:
        kinds: dict[str, int] = {}
        for _, source in self._engine.starter.host.hosted():
            kind = source_kind(source)
            kinds[kind] = kinds.get(kind, 0) + 1
        yield _by_kind(
            GaugeMetricFamily,
            "orchestrator_run_triggers_waiting",
            "Run triggers hosted now (what starts DAGs' runs), by source kind",
            kinds,
        )

    def _loop(self) -> Iterator[Metric]:
        watchdog = self._engine.watchdog
        yield _gauge(
            "orchestrator_event_loop_lag_seconds",
            "How long the event loop took to answer the watchdog's last ping",
            [((), watchdog.lag)],
        )
        yield _counter(
            "orchestrator_event_loop_blocked_seconds",
            "Time the event loop was blocked past the watchdog's threshold (the log names who)",
            [((), watchdog.blocked_seconds)],
        )
        yield _counter(
            "orchestrator_event_loop_blocks",
            "Times the event loop was blocked",
            [((), watchdog.blocks)],
        )

    def _store(self) -> Iterator[Metric]:
        stats = self._engine.store.statistics()
        summary = SummaryMetricFamily(
            "orchestrator_store_transaction_seconds",
            "Store write transactions (rate of _count: transactions per second) and their time",
            count_value=stats.transactions,
            sum_value=stats.transaction_seconds,
        )
        yield summary
        yield _counter(
            "orchestrator_store_batches",
            "Write batches committed (several may share one transaction)",
            [((), stats.batches)],
        )


def _gauge(
    name: str, documentation: str, samples: Iterable[tuple[Labels, float]], *labels: str
) -> GaugeMetricFamily:
    return _filled(GaugeMetricFamily(name, documentation, labels=labels), samples)


def _counter(
    name: str, documentation: str, samples: Iterable[tuple[Labels, float]], *labels: str
) -> CounterMetricFamily:
    return _filled(CounterMetricFamily(name, documentation, labels=labels), samples)


_Family = TypeVar("_Family", GaugeMetricFamily, CounterMetricFamily)


def _filled(family: _Family, samples: Iterable[tuple[Labels, float]]) -> _Family:
    for values, value in samples:
        family.add_metric(values, value)
    return family


def _by_kind(
    family_type: type[GaugeMetricFamily] | type[CounterMetricFamily],
    name: str,
    documentation: str,
    counts: Mapping[str, int],
) -> Metric:
    family = family_type(name, documentation, labels=("kind",))
    for kind, count in sorted(counts.items()):
        family.add_metric((kind,), count)
    return family
