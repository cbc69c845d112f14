"""Proactive alerts: a scheduled run late to start, a run trigger gone silent, a run too long.

Nothing happens to cause these: they are about what did *not* happen by a deadline. So in
every step, just before the commit, `OverdueAlerts.add` looks at what the engine holds (its
runs, its DAGs' schedules, each run trigger's last event), adds a row for each deadline passed
to the step's write batch, and asks for one timer (`timers`) at the next deadline: the engine
wakes then and takes a step even if nothing else happens. No loop polls.

Each alert's id is made from its rule, what it is about and its channel, and the outbox adds
a row whose id it already has as nothing (`INSERT OR IGNORE`): so a restarted engine that
finds the same late run, or the same silence, alerts nobody twice. What each is about:

- `run_late`: one interval of a scheduled DAG (its logical date) whose run has not started
  `late_after` seconds after the interval ended (its tick), either not created because the
  DAG is at `max_active_runs` or queued behind other runs. A paused DAG is never late.
- `trigger_silent`: a run trigger and its last event (before any, since this engine began
  watching it). Once per silence: an event ends it, and the next silence alerts again.
- `run_too_long`: a run still running `max_duration` seconds after it started.

Without a proactive rule this costs nothing; with one, each step visits the engine's active
runs and its DAGs' run triggers once per rule (what it holds in memory, no query).
"""

from __future__ import annotations

import fnmatch
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

from orchestrator.alertconfig import AlertRule
from orchestrator.authoring.dag import DAG
from orchestrator.authoring.intervals import intervals_due
from orchestrator.authoring.run_sources import source_name
from orchestrator.authoring.schedules import Schedule
from orchestrator.scheduling.autostart import RunStarter
from orchestrator.scheduling.deferred import Timer
from orchestrator.scheduling.run_timeouts import running_deadline
from orchestrator.scheduling.scheduler import Scheduler
from orchestrator.state import RunState
from orchestrator.store.alertrows import AlertRecord
from orchestrator.store.base import Store, WriteBatch

SourceKey = tuple[str, str]  # (dag_id, run trigger name)
_NO_TASK = ("", "", -1)  # an alert timer's key: it is about no task instance


@dataclass(frozen=True)
class Overdue:
    """Something with a deadline: alerted once `due` has passed, if it is still so then."""

    event: str
    due: float
    subject: str  # what it is about, the same after a restart
    dag_id: str
    run_id: str | None
    summary: str


class OverdueAlerts:
    """Finds what is overdue in each step and adds its alerts to the step's batch."""

    def __init__(
        self, rules: tuple[AlertRule, ...], scheduler: Scheduler, starter: RunStarter
    ) -> None:
        self.rules = tuple(
            rule for rule in rules if any(rule.threshold(event) for event in rule.on)
        )
        self._scheduler = scheduler
        self._starter = starter
        self.timers: list[Timer] = []  # for the engine's heap: the next deadline
        self.last_events: dict[SourceKey, float] = {}  # each run trigger's last event
        self._watching_since: dict[SourceKey, float] = {}  # run triggers without an event yet
        self._alerted: set[str] = set()  # rule and subject, alerted by this process
        self._armed: set[float] = set()  # when a timer is set for

    async def load(self, store: Store) -> None:
        """Read when each run trigger last fired (the store knows, after a restart)."""
        if self.rules:
            counts = await store.event_counts_by_source()
            self.last_events = {key: last for key, (_, last) in counts.items()}

    def add(self, batch: WriteBatch, now: float) -> int:
        """Add the alerts of every deadline passed to `batch`; returns how many rows."""
        if not self.rules:
            return 0
        self._note_events(batch)
        records: list[AlertRecord] = []
        current: set[str] = set()
        upcoming: list[float] = []
        for rule in self.rules:
            for overdue in self._overdue(rule, now):
                key = f"{rule!r}|{overdue.event}|{overdue.subject}"
                current.add(key)
                if key in self._alerted:
                    continue
                if overdue.due <= now:
                    self._alerted.add(key)
                    records += _records(rule, key, overdue, now)
                else:
                    upcoming.append(overdue.due)
        self._alerted &= current  # what is no longer overdue (a run started) cannot come back
        self._arm(min(upcoming, default=None), now)
        if records:
            batch.add_alerts(records)
        return len(records)

    def _note_events(self, batch: WriteBatch) -> None:
        for op in batch.ops:
            if op.kind == "add_events":
                for event in op.args["events"]:
                    key = (event.dag_id, event.source)
                    self.last_events[key] = max(self.last_events.get(key, 0.0), event.received_at)

    def _arm(self, due: float | None, now: float) -> None:
        """One timer at the next deadline, unless one is set for that moment already."""
        self._armed = {moment for moment in self._armed if moment > now}
        if due is not None and due not in self._armed:
            self._armed.add(due)
            self.timers.append(Timer(due, _NO_TASK, "alert"))

    # -- what is overdue -------------------------------------------------------------------------

    def _overdue(self, rule: AlertRule, now: float) -> Iterator[Overdue]:
        for event in rule.on:
            seconds = rule.threshold(event)
            if seconds is None:
                continue
            if event == "run_too_long":
                yield from self._too_long(rule, seconds)
            elif event == "run_late":
                yield from self._late(rule, seconds, now)
            elif event == "trigger_silent":
                yield from self._silent(rule, seconds, now)

    def _too_long(self, rule: AlertRule, seconds: float) -> Iterator[Overdue]:
        for run in self._scheduler.runs.values():
            found = running_deadline(run, seconds)
            if found is not None and _covers(rule, run.dag.dag_id):
                due, summary = found
                yield Overdue("run_too_long", due, run.run_id, run.dag.dag_id, run.run_id, summary)

    def _late(self, rule: AlertRule, seconds: float, now: float) -> Iterator[Overdue]:
        for run in self._scheduler.runs.values():
            dag_id, tick = run.dag.dag_id, run.data_interval_end
            if run.state is RunState.QUEUED and run.run_type == "scheduled" and tick is not None:
                if self._watched(rule, run.dag) and run.logical_date is not None:
                    summary = _late_summary(run.logical_date, tick, seconds, "queued")
                    yield Overdue(
                        "run_late",
                        tick + seconds,
                        f"{dag_id}@{_iso(run.logical_date)}",
                        dag_id,
                        run.run_id,
                        summary,
                    )
        for dag in self._starter.dags.values():
            if dag.starts.schedule is not None and self._watched(rule, dag):
                yield from self._not_created(dag, dag.starts.schedule, seconds, now)

    def _not_created(
        self, dag: DAG, schedule: Schedule, seconds: float, now: float
    ) -> Iterator[Overdue]:
        """The DAG's next ended interval, held back with no run: the DAG is at its limit.

        With room, the run starter creates that run at its next look (in this step or the
        next): it is not late, only not looked at yet.
        """
        active = len(self._starter.ticks.active.get(dag.dag_id, ()))
        if active < dag.max_active_runs:
            return
        starts = dag.starts
        for interval in intervals_due(
            schedule,
            now=now,
            after=self._starter.ticks.latest.get(dag.dag_id),
            start=starts.start,
            end=starts.end,
            catchup=starts.catchup,
            limit=1,
        ):
            limit_reached = f"max_active_runs = {dag.max_active_runs}"
            why = f"not created: {active} scheduled runs unfinished, {limit_reached}"
            yield Overdue(
                "run_late",
                interval.end + seconds,
                f"{dag.dag_id}@{_iso(interval.start)}",
                dag.dag_id,
                None,
                _late_summary(interval.start, interval.end, seconds, why),
            )

    def _silent(self, rule: AlertRule, seconds: float, now: float) -> Iterator[Overdue]:
        for dag in self._starter.dags.values():
            if not self._watched(rule, dag):
                continue
            for trigger in dag.starts.triggers:
                key = (dag.dag_id, source_name(trigger))
                last = self.last_events.get(key)
                since = last if last is not None else self._watching_since.setdefault(key, now)
                if last is None:
                    what = f"no event since it began to be watched at {_iso(since)}"
                else:
                    what = f"its last event came at {_iso(last)}"
                yield Overdue(
                    "trigger_silent",
                    since + seconds,
                    f"{key[0]}/{key[1]}@{last}",
                    dag.dag_id,
                    None,
                    f"run trigger {key[1]} has not fired for {seconds:g} s: {what}",
                )

    def _watched(self, rule: AlertRule, dag: DAG) -> bool:
        """The rule covers the DAG, and the DAG starts runs by itself now (not paused)."""
        starter = self._starter
        return (
            not starter.stopped and dag.dag_id not in starter.paused and _covers(rule, dag.dag_id)
        )


def _covers(rule: AlertRule, dag_id: str) -> bool:
    return not rule.dags or any(fnmatch.fnmatchcase(dag_id, glob) for glob in rule.dags)


def _records(rule: AlertRule, key: str, overdue: Overdue, now: float) -> list[AlertRecord]:
    return [
        AlertRecord(
            alert_id=_alert_id(key, channel),
            created_at=now,
            event=overdue.event,
            channel=channel,
            dag_id=overdue.dag_id,
            run_id=overdue.run_id,
            summary=overdue.summary,
        )
        for channel in dict.fromkeys(rule.channels)
    ]


def _alert_id(key: str, channel: str) -> str:
    """The same rule, subject and channel give the same id, in this process or the next."""
    return "alert_" + hashlib.sha256(f"{key}|{channel}".encode()).hexdigest()[:32]


def _late_summary(start: float, tick: float, seconds: float, why: str) -> str:
    return (
        f"the run for the interval from {_iso(start)} has not started {seconds:g} s after "
        f"its tick at {_iso(tick)} ({why})"
    )


def _iso(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).isoformat(timespec="seconds")
