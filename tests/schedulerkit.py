"""A `Scheduler` driven step by step the way the engine's step drives it, without a store.

Shared by the scheduler tests (importable as `schedulerkit`): each adds its own way of
queueing runs, and reads what a step did from its `Transitions`.
"""

from __future__ import annotations

from orchestrator.changes import RunChanged
from orchestrator.execution.jobs import Outcome, TaskOutcome
from orchestrator.scheduling.active_runs import TaskInstance, Transitions
from orchestrator.scheduling.scheduler import Scheduler
from orchestrator.state import RunState

SUCCESS = TaskOutcome(status=Outcome.SUCCESS, result_json="null")


class DrivenScheduler:
    """A scheduler and the task instances it started; `step` is one engine step at `now`."""

    def __init__(self, *, slots: int, pools: dict[str, int] | None = None, now: float) -> None:
        self.scheduler = Scheduler(slots=slots, pools=pools or {}, log_dir="logs")
        self.running: list[TaskInstance] = []
        self.now = now

    def step(self, *finished: TaskInstance) -> Transitions:
        """Outcomes, then admit and settle until nothing changes, then slots."""
        tx = Transitions(self.now)
        for ti in finished:
            self.scheduler.finish(ti, SUCCESS, tx)
            self.running.remove(ti)
        while True:
            self.scheduler.admit_runs(tx)
            if not self.scheduler.advance(tx):
                break
        self.running.extend(self.scheduler.allocate(tx))
        return tx


def admitted(tx: Transitions) -> list[str]:
    """The runs a step moved to running, in order."""
    return [
        c.run_id for c in tx.changes if isinstance(c, RunChanged) and c.state is RunState.RUNNING
    ]
