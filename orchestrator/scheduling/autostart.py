"""The engine's part that starts runs by itself: run triggers, asset and DAG events, schedules.

The engine hands it the messages it gets (`SourceEvent`, `SourceCursor`, `SourceStatus`,
`DagDue`); in each scheduling step `prepare` does the reads that dedup needs (which events and
which intervals are already recorded: the engine is the store's only writer, so a read then a
write in the same step cannot race), and `apply` adds events and runs to the step's one
transaction. Triggers are armed only after the transaction that records them has committed.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from orchestrator.authoring.dag import DAG
from orchestrator.authoring.intervals import Interval
from orchestrator.authoring.run_sources import source_name
from orchestrator.changes import RunChanged, endings
from orchestrator.scheduling.active_runs import Transitions
from orchestrator.scheduling.deferred import Timer
from orchestrator.scheduling.events_to_runs import EventRuns, Incoming, NewRun
from orchestrator.scheduling.schedule_ticks import ScheduleTicks, interval_key
from orchestrator.store.base import Store
from orchestrator.store.records import EventRecord, RunRecord, RunSourceRecord
from orchestrator.waiting.run_trigger_host import SourceHost, SourceKey
from triggers.base import Trigger, TriggerEvent, TriggerRuntime

logger = logging.getLogger("orchestrator.runstarter")


@dataclass(frozen=True)
class SourceEvent:
    """A run trigger yielded an event."""

    key: SourceKey
    event: TriggerEvent


@dataclass(frozen=True)
class SourceCursor:
    """A run trigger saved where it got to; committed with (or after) the events before it."""

    key: SourceKey
    cursor: Any


@dataclass(frozen=True)
class SourceStatus:
    """A run trigger failed and will be started again (`error`), or is watching again (None)."""

    key: SourceKey
    error: str | None


@dataclass(frozen=True)
class DagDue:
    """Time to look at a DAG again: its events' window ended, or a schedule tick came."""

    dag_id: str
    kind: str  # "gather" | "schedule"


StarterMessage = SourceEvent | SourceCursor | SourceStatus | DagDue


def event_key(event: TriggerEvent) -> str:
    """The event's dedup key; one the trigger did not give is made from the payload."""
    if event.dedup_key is not None:
        return event.dedup_key
    text = json.dumps(event.payload, sort_keys=True, separators=(",", ":"))
    return "payload:" + hashlib.sha256(text.encode()).hexdigest()


@dataclass
class Prepared:
    """What one step's reads found: events already recorded, intervals already run."""

    known_events: dict[str, set[str]] = field(default_factory=dict)  # dag_id -> dedup keys
    intervals: dict[str, list[tuple[Interval, bool]]] = field(default_factory=dict)


class RunStarter:
    """Turns events and schedule ticks into runs, for every loaded DAG that is not paused."""

    def __init__(
        self,
        host_group: Any,
        *,
        runtime: TriggerRuntime,
        post: Callable[[StarterMessage], None],
        new_run: NewRun,
    ) -> None:
        self.events = EventRuns(new_run)
        self.ticks = ScheduleTicks()
        self.host = SourceHost(
            host_group,
            runtime=runtime,
            on_event=lambda key, event: post(SourceEvent(key, event)),
            on_status=lambda key, error: post(SourceStatus(key, error)),
            save_cursor=self._post_cursor,
        )
        self._post = post
        self._new_run = new_run
        self.dags: dict[str, DAG] = {}
        self.paused: set[str] = set()
        self.stopped = False
        self.timers: list[Timer] = []  # DAG timers for the engine's heap (key: (dag_id, "", -1))
        self.runs_created = 0  # runs this step created from events or ticks (for crash points)
        self.duplicate_events: Counter[str] = Counter()  # by DAG: events seen before, no run
        self._cursors: dict[SourceKey, Any] = {}
        self._armings: list[tuple[SourceKey, Trigger]] = []
        self._wakeups: dict[str, set[float]] = {}  # dag_id -> when its DAG timers are set for

    async def _post_cursor(self, key: SourceKey, cursor: Any) -> None:
        self._cursors[key] = cursor
        self._post(SourceCursor(key, cursor))

    # -- start-up and DAG changes ---------------------------------------------------------------

    async def load(self, store: Store) -> None:
        """Read what an earlier process left: pauses, cursors, intervals run, waiting events."""
        self.paused = {dag.dag_id for dag in await store.list_dags() if dag.is_paused}
        sources = await store.list_run_sources()
        self._cursors = {(s.dag_id, s.source): s.cursor for s in sources}
        self.ticks.latest = await store.latest_logical_dates("scheduled")
        self.events.restore(_readable(await store.list_pending_events(), sources))

    def note_unfinished(self, record: RunRecord) -> None:
        """A run left unfinished before a restart: a scheduled one holds one of the DAG's places."""
        if record.run_type == "scheduled":
            self.ticks.active.setdefault(record.dag_id, set()).add(record.run_id)

    def activate_all(self, dags: Iterable[DAG], tx: Transitions) -> None:
        """`activate` each of these DAGs, in one transaction."""
        for dag in dags:
            self.activate(dag, tx)

    def activate(self, dag: DAG, tx: Transitions) -> None:
        """Start (or go on) starting the DAG's runs: record its run triggers, set its timers."""
        old = self.dags.get(dag.dag_id)
        self.dags[dag.dag_id] = dag
        self.events.index(self.dags.values())
        names = [source_name(source) for source in dag.starts.sources]
        tx.batch.delete_run_sources(dag.dag_id, keep=names)
        for source in dag.starts.sources:
            tx.batch.put_run_source(self._source_record(dag.dag_id, source, tx.now))
        kept = {source_name(t) for t in old.starts.triggers} if old is not None else set()
        for key in self.host.hosted():
            if key[0] == dag.dag_id and key[1] not in names:
                self.host.disarm(key)
        for trigger in dag.starts.triggers:
            key = (dag.dag_id, source_name(trigger))
            if key not in self.host.hosted() or key[1] not in kept:
                self._armings.append((key, trigger))
        self._look_soon(dag.dag_id, tx.now)

    def deactivate(self, dag_id: str) -> None:
        """The DAG is gone (its file was deleted): stop its triggers and timers.

        Its events waiting for a window stay pending, here as in the store (which is read only
        at start-up): if the DAG comes back, its first look starts their run.
        """
        self.dags.pop(dag_id, None)
        self.events.index(self.dags.values())
        self._disarm_dag(dag_id)

    def set_paused(self, dag_id: str, paused: bool, tx: Transitions) -> None:
        """Paused: its run triggers stop (a scan on unpause finds what came meanwhile)."""
        if paused:
            self.paused.add(dag_id)
            self._disarm_dag(dag_id)
            return
        self.paused.discard(dag_id)
        dag = self.dags.get(dag_id)
        if dag is not None:
            self._armings.extend(((dag_id, source_name(t)), t) for t in dag.starts.triggers)
            self._look_soon(dag_id, tx.now)

    def stop(self) -> None:
        """Shutting down: no more events, ticks or runs from here."""
        self.stopped = True
        self.host.disarm_all()
        self._armings.clear()

    def after_commit(self) -> None:
        """Arm the run triggers whose rows have committed."""
        armings, self._armings = self._armings, []
        for key, trigger in armings:
            if not self.stopped and key[0] not in self.paused and key[0] in self.dags:
                self.host.arm(key, trigger, self._cursors.get(key))

    def _disarm_dag(self, dag_id: str) -> None:
        for key in self.host.hosted():
            if key[0] == dag_id:
                self.host.disarm(key)
        self._armings = [(key, t) for key, t in self._armings if key[0] != dag_id]

    def _source_record(self, dag_id: str, source: Any, now: float) -> RunSourceRecord:
        name = source_name(source)
        if isinstance(source, Trigger):
            classpath, kwargs = source.serialize()
        else:  # an Asset or DagFinished: named by its public path, which no move of ours changes
            classpath, kwargs = f"orchestrator.{type(source).__name__}", {"name": name}
        cursor = self._cursors.get((dag_id, name))
        return RunSourceRecord(
            dag_id=dag_id,
            source=name,
            classpath=classpath,
            kwargs=kwargs,
            armed_at=now,
            cursor=cursor,
        )

    def _look_soon(self, dag_id: str, now: float) -> None:
        """Check the DAG's schedule and waiting events in the next step."""
        self._wake_at(dag_id, now)

    def _wake_at(self, dag_id: str, due: float) -> None:
        """A DAG timer at `due`, unless one is set for that moment already.

        Every look sets the next one, so without this each extra look (a run ended, a window
        checked) would add a timer that lives on, tick after tick, for as long as the daemon.
        """
        wakeups = self._wakeups.setdefault(dag_id, set())
        if due not in wakeups:
            wakeups.add(due)
            self.timers.append(Timer(due, (dag_id, "", -1), "dag"))

    # -- each step ------------------------------------------------------------------------------

    async def prepare(self, messages: list[Any], store: Store, now: float) -> Prepared:
        """The reads dedup needs, before the step's transaction is built."""
        prepared = Prepared()
        keys: dict[str, list[str]] = {}
        for message in messages:
            if isinstance(message, SourceEvent):
                keys.setdefault(message.key[0], []).append(event_key(message.event))
        for dag_id, dedup_keys in keys.items():
            prepared.known_events[dag_id] = await store.known_event_keys(dag_id, dedup_keys)
        for message in messages:
            if isinstance(message, DagDue) and message.dag_id not in prepared.intervals:
                await self._prepare_ticks(message.dag_id, store, now, prepared)
        return prepared

    async def _prepare_ticks(
        self, dag_id: str, store: Store, now: float, prepared: Prepared
    ) -> None:
        dag = self.dags.get(dag_id)
        if dag is None or self.stopped or dag_id in self.paused:
            return
        intervals = self.ticks.candidates(dag, now)
        known = await store.known_run_keys(dag_id, [interval_key(i) for i in intervals])
        prepared.intervals[dag_id] = [(i, interval_key(i) in known) for i in intervals]

    def apply(self, message: StarterMessage, prepared: Prepared, tx: Transitions) -> None:
        """Add what the message means to the step's transaction."""
        if isinstance(message, SourceEvent):
            self._accept_source_event(message, prepared, tx)
        elif isinstance(message, SourceCursor):
            tx.batch.save_source_cursor(*message.key, message.cursor)
        elif isinstance(message, SourceStatus):
            self._record_status(message, tx)
        else:
            self._look(message.dag_id, prepared, tx)

    def _accept_source_event(
        self, message: SourceEvent, prepared: Prepared, tx: Transitions
    ) -> None:
        dag_id, source = message.key
        dag = self.dags.get(dag_id)
        known = prepared.known_events.setdefault(dag_id, set())
        key = event_key(message.event)
        if dag is None or self.stopped:
            return
        if key in known:
            self.duplicate_events[dag_id] += 1
            return  # seen before (a rescan after a restart): no second run
        known.add(key)
        self._accept(dag, Incoming(dag_id, source, key, dict(message.event.payload)), tx)

    def _accept(self, dag: DAG, incoming: Incoming, tx: Transitions) -> None:
        outcome = self.events.accept(dag, incoming, tx)
        if isinstance(outcome, str):
            self.runs_created += 1
        elif outcome is None:
            return  # waits for the other asset updates its DAG's all_of needs
        elif len(self.events.pending[dag.dag_id]) == 1 or dag.starts.debounce is not None:
            self._wake_at(dag.dag_id, outcome)

    def _record_status(self, message: SourceStatus, tx: Transitions) -> None:
        dag_id, source = message.key
        if message.error is not None:
            logger.warning("run trigger %s of DAG %s %s", source, dag_id, message.error)
        tx.batch.set_source_error(dag_id, source, message.error)

    def _look(self, dag_id: str, prepared: Prepared, tx: Transitions) -> None:
        """A DAG timer came due: start the runs its window or schedule says are due now."""
        self._wakeups[dag_id] = {due for due in self._wakeups.get(dag_id, ()) if due > tx.now}
        dag = self.dags.get(dag_id)
        if dag is None or self.stopped:
            return
        due = self.events.due(dag)
        if due is not None and due <= tx.now:
            self.runs_created += self.events.flush(dag, tx) is not None
        elif due is not None:
            self._wake_at(dag_id, due)
        if self._start_intervals(dag, prepared.intervals.pop(dag_id, []), tx):
            # Intervals that already had a run (a backfill made it) took none of the DAG's
            # room: look at the ones after them now, not at the next tick.
            self._look_soon(dag_id, tx.now)
        if dag.starts.schedule is not None and dag_id not in self.paused:
            look = self.ticks.next_look(dag, tx.now)
            if look is not None:
                self._wake_at(dag_id, look)

    def _start_intervals(
        self, dag: DAG, intervals: list[tuple[Interval, bool]], tx: Transitions
    ) -> bool:
        """Start a run for each interval that has none; True if some already had one."""
        for interval, known in intervals:
            self._start_interval(dag, interval, known, tx)
        return any(known for _, known in intervals)

    def _start_interval(self, dag: DAG, interval: Interval, known: bool, tx: Transitions) -> None:
        run_id = None
        if not known:
            run_id = self._new_run(
                dag,
                {},
                tx.batch,
                run_type="scheduled",
                dedup_key=interval_key(interval),
                logical_date=interval.start,
                data_interval_end=interval.end,
            )
            self.runs_created += 1
        self.ticks.started(dag.dag_id, interval, run_id)

    # -- events from inside the engine ----------------------------------------------------------

    def follow(self, tx: Transitions, start: int, dag_of_run: Callable[[str], DAG | None]) -> int:
        """Record the events caused by `tx.changes[start:]`; return how far it looked."""
        end = len(tx.changes)
        ended = endings(tx.changes[start:end])
        for change in ended:
            if isinstance(change, RunChanged):
                if self.ticks.ended(change.dag_id, change.run_id) and not self.stopped:
                    self._look_soon(change.dag_id, tx.now)
        for incoming in self.events.follow(ended, dag_of_run):
            dag = self.dags.get(incoming.dag_id)
            if dag is not None:
                self._accept(dag, incoming, tx)
        return end


def _readable(events: list[EventRecord], sources: list[RunSourceRecord]) -> list[EventRecord]:
    """The waiting events that can start a run; the others are logged and left as they are.

    A waiting event whose payload cannot be read would start a run on a made-up payload, so
    it starts none (it stays in the store, and `orchestrator db check` names it). A run
    trigger whose cursor cannot be read starts from the beginning: what it sees again has
    the dedup key of an event already recorded, and starts no second run.
    """
    damaged = [
        *((f"run trigger {s.source} of DAG {s.dag_id} starts over", s.damaged) for s in sources),
        *((f"event {e.event_id} of DAG {e.dag_id} starts no run", e.damaged) for e in events),
    ]
    for what, why in damaged:
        if why is not None:
            logger.error("%s: %s", what, why)
    return [event for event in events if event.damaged is None]
