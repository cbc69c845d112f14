"""The runs this engine drives: their DAGs, their shared plans, and an event to wait on each.

A run is driven from the moment it is adopted (triggered, created by a run trigger, queued
again by a clear, or picked up after a restart) until a committed change says it finished;
`Engine.wait()` waits on its event, and the run starter asks which DAG a finished run was of.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable

import anyio

from orchestrator.authoring.dag import DAG
from orchestrator.changes import Change, RunChanged, endings
from orchestrator.scheduling.active_runs import ActiveRun, DagPlan
from orchestrator.scheduling.scheduler import Scheduler


class DrivenRuns:
    """Which runs this engine drives, and the one `DagPlan` per DAG their scheduling shares."""

    def __init__(self, scheduler: Scheduler) -> None:
        self._scheduler = scheduler
        self._done: dict[str, anyio.Event] = {}
        self._dags: dict[str, DAG] = {}  # run_id -> DAG
        # DAG -> its plan, computed once. Keyed by the DAG itself, held weakly: an `id()` of a
        # DAG dropped by a reload can be a new DAG's, which then got the old DAG's plan.
        self._plans: weakref.WeakKeyDictionary[DAG, DagPlan] = weakref.WeakKeyDictionary()

    def plan(self, dag: DAG) -> DagPlan:
        """The DAG's plan: a loaded DAG's tasks, edges and weights no longer change (a reload
        loads new DAG objects)."""
        plan = self._plans.get(dag)
        if plan is None:
            plan = self._plans[dag] = DagPlan.of(dag)
        return plan

    def adopt(self, run: ActiveRun) -> None:
        """Drive `run`: the scheduler gets it, and `wait` can wait for it."""
        self.track(run.run_id, run.dag)
        self._scheduler.add_run(run)

    def track(self, run_id: str, dag: DAG) -> None:
        """Note a run the scheduler already holds (one recovered after a restart)."""
        self._done[run_id] = anyio.Event()
        self._dags[run_id] = dag

    def dag_of(self, run_id: str) -> DAG | None:
        return self._dags.get(run_id)

    def done_event(self, run_id: str) -> anyio.Event | None:
        """Set once the run's end has committed; None when this engine does not drive it."""
        return self._done.get(run_id)

    def note_ends(self, changes: Iterable[Change]) -> None:
        """Of these committed changes, the runs that ended: `finished` for each."""
        for change in endings(changes):
            if isinstance(change, RunChanged):
                self.finished(change.run_id)

    def finished(self, run_id: str) -> None:
        """The run's end has committed: wake its waiters and forget it."""
        self._dags.pop(run_id, None)
        done = self._done.pop(run_id, None)
        if done is not None:
            done.set()
