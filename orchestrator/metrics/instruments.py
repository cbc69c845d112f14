"""The engine's counters and histograms, fed by committed changes as the engine publishes them.

```python
metrics = EngineMetrics.attach(engine)      # the API does this for its engine
text = metrics.exposition()                 # what `GET /metrics` answers
```

A histogram of durations needs when something began: the start of a try, of a run, the
event that started a run. Those moments are held here, keyed by run id, until the end they
wait for arrives, and then dropped; run ids never reach a label.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from importlib.metadata import version
from platform import python_version
from typing import TYPE_CHECKING, TypeVar

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    Info,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.metrics import MetricWrapperBase

from orchestrator.changes import Change, EventRecorded, RunChanged, TaskChanged
from orchestrator.metrics.collector import EngineCollector
from orchestrator.metrics.kinds import source_kind
from orchestrator.state import FINISHED_TASK_STATES, RunState, TaskState

if TYPE_CHECKING:
    from orchestrator.scheduling.engine import Engine

# No `_created` series beside every counter and histogram: they double what a scrape carries,
# and a restart already shows in `orchestrator_start_time_seconds`. (A process-wide switch:
# the daemon is the only user of prometheus_client in its process.)
disable_created_metrics()  # type: ignore[no-untyped-call]  # untyped upstream

#: Seconds, from a millisecond (an event-driven start) to a day (a long training task).
DURATION_BUCKETS = (
    0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 4 * 3600,
    86400,
)  # fmt: skip
_TaskKey = tuple[str, str, int]
# The states every task change is compared with, as module constants: in Python 3.11 reading a
# member off its enum class (`TaskState.RUNNING`) takes the slow path of `EnumType.__getattr__`,
# about 0.1 us each, five times per change.
_SCHEDULED, _RUNNING, _RETRY = TaskState.SCHEDULED, TaskState.RUNNING, TaskState.UP_FOR_RETRY
_STARTED = (TaskState.RUNNING, TaskState.DEFERRED)  # a try began, on a slot or waiting
_Metric = TypeVar("_Metric", bound=MetricWrapperBase)


class EngineMetrics:
    """One engine's registry: counters and histograms fed here, gauges by `EngineCollector`."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self._define(self.registry)
        self._run_started: dict[str, float] = {}  # run id -> when it went running
        self._ready_at: dict[_TaskKey, float] = {}  # task instance -> when it was scheduled
        self._running_since: dict[_TaskKey, float] = {}
        self._events: dict[str, tuple[str, float]] = {}  # run id -> (its event's kind, received)
        self._stop: Callable[[], None] = _nothing
        self._children: dict[tuple[MetricWrapperBase, tuple[str, ...]], MetricWrapperBase] = {}

    @classmethod
    def attach(cls, engine: Engine) -> EngineMetrics:
        """Metrics for `engine`: listen to its change feed and read its state at each scrape."""
        metrics = cls()
        metrics.registry.register(EngineCollector(engine, started_at=time.time()))
        metrics._stop = engine.feed.listen(metrics.observe)
        return metrics

    def detach(self) -> None:
        """Stop listening to the engine (its API is gone)."""
        self._stop()

    def exposition(self) -> bytes:
        """Every metric in Prometheus's text format (0.0.4)."""
        return generate_latest(self.registry)

    def _define(self, registry: CollectorRegistry) -> None:
        per_task = ("dag_id", "task_id")
        self.runs_finished = Counter(
            "orchestrator_runs_finished",
            "Runs that finished, by DAG and final state",
            ("dag_id", "state"),
            registry=registry,
        )
        self.tasks_finished = Counter(
            "orchestrator_task_instances_finished",
            "Task instances that finished, by DAG, task and final state",
            (*per_task, "state"),
            registry=registry,
        )
        self.task_retries = Counter(
            "orchestrator_task_retries",
            "Tries that failed with a retry left (the task instance went up_for_retry)",
            per_task,
            registry=registry,
        )
        self.task_duration = self._histogram(
            "orchestrator_task_duration_seconds",
            "How long each try ran on its slot (running until it ended or deferred)",
            per_task,
        )
        self.task_queued = self._histogram(
            "orchestrator_task_queued_seconds",
            "How long a ready task instance waited for a slot and a worker (scheduled to running)",
            per_task,
        )
        self.run_duration = self._histogram(
            "orchestrator_run_duration_seconds",
            "How long runs took, from running to finished",
            ("dag_id",),
        )
        self.schedule_delay = self._histogram(
            "orchestrator_schedule_delay_seconds",
            "How late scheduled runs started running after their interval ended",
            ("dag_id",),
        )
        self.event_latency = self._histogram(
            "orchestrator_event_to_task_start_seconds",
            "From an event's arrival to the first task of the run it started starting",
            ("kind",),
        )
        self.webhook_deliveries = Counter(
            "orchestrator_webhook_deliveries",
            "Webhook deliveries by outcome (created, duplicate, ignored, refused) and reason",
            ("outcome", "reason"),
            registry=registry,
        )
        Info("orchestrator_build", "The orchestrator's version", registry=registry).info(
            {"version": version("orchestrator"), "python": python_version()}
        )
        ProcessCollector(registry=registry)

    def _histogram(self, name: str, documentation: str, labels: tuple[str, ...]) -> Histogram:
        return Histogram(
            name, documentation, labels, registry=self.registry, buckets=DURATION_BUCKETS
        )

    def _child(self, metric: _Metric, *values: str) -> _Metric:
        """`metric.labels(*values)`, kept: a webhook's run asks for seven children as it goes.

        (`labels()` checks and joins its values each time; the child it returns is the same.)
        """
        child = self._children.get((metric, values))
        if child is None:
            child = self._children[metric, values] = metric.labels(*values)
        return child  # type: ignore[return-value]  # the same class as `metric`

    # -- facts from elsewhere -------------------------------------------------------------------

    def webhook_delivery(self, outcome: str, reason: str = "") -> None:
        """Count a webhook delivery: created, duplicate, ignored, or refused for `reason`."""
        self._child(self.webhook_deliveries, outcome, reason).inc()

    def event_started_run(self, run_id: str, source: str, received_at: float) -> None:
        """An event started `run_id`: its first task's start is timed from `received_at`."""
        self._events.setdefault(run_id, (source_kind(source), received_at))

    # -- the change feed ------------------------------------------------------------------------

    def observe(self, change: Change) -> None:
        """Count one committed change (called by the engine's feed as it publishes)."""
        if isinstance(change, TaskChanged):
            self._task_changed(change)
        elif isinstance(change, RunChanged):
            self._run_changed(change)
        elif isinstance(change, EventRecorded) and change.run_id is not None:
            self.event_started_run(change.run_id, change.source, change.received_at)

    def _task_changed(self, change: TaskChanged) -> None:
        key = (change.run_id, change.task_id, change.map_index)
        state = change.state
        began = self._running_since.pop(key, None)
        if began is not None:
            self._child(self.task_duration, change.dag_id, change.task_id).observe(
                max(0.0, change.at - began)
            )
        if state is _SCHEDULED:
            self._ready_at[key] = change.at
        elif state is _RUNNING:
            self._running_since[key] = change.at
            ready = self._ready_at.pop(key, None)
            if ready is not None:
                self._child(self.task_queued, change.dag_id, change.task_id).observe(
                    max(0.0, change.at - ready)
                )
        elif state is _RETRY:
            self._child(self.task_retries, change.dag_id, change.task_id).inc()
        elif state in FINISHED_TASK_STATES:
            self._ready_at.pop(key, None)
            self._child(self.tasks_finished, change.dag_id, change.task_id, state.value).inc()
        # Only a run started by an event waits to hear of its first task: most changes (every
        # sensor armed, 100,000 at once) skip the call.
        if self._events and state in _STARTED:
            self._task_started(change)

    def _task_started(self, change: TaskChanged) -> None:
        """The run's first task started (or deferred): the event that started it is answered."""
        event = self._events.pop(change.run_id, None)
        if event is not None:
            kind, received_at = event
            self._child(self.event_latency, kind).observe(max(0.0, change.at - received_at))

    def _run_changed(self, change: RunChanged) -> None:
        if change.state is RunState.RUNNING:
            self._run_started[change.run_id] = change.at
            if change.scheduled_for is not None:
                delay = max(0.0, change.at - change.scheduled_for)
                self._child(self.schedule_delay, change.dag_id).observe(delay)
        elif change.state.finished:
            self._child(self.runs_finished, change.dag_id, change.state.value).inc()
            self._events.pop(change.run_id, None)
            began = self._run_started.pop(change.run_id, None)
            if began is not None:
                self._child(self.run_duration, change.dag_id).observe(max(0.0, change.at - began))


def _nothing() -> None:
    """What `detach` does before `attach`."""
