"""Slots: which scheduled task instances wait for one, and how many slots and pool slots are taken.

Instances wait in one heap: highest priority first, then the oldest run, then the task's place
in its DAG, then first come. A waiting instance gets a slot only while its pool and its DAG's
`max_active_tasks` have room; one that does not fit stays in the heap for the next step, so a
full pool holds back only its own tasks. The ledger only counts and orders: what starting a task
instance records is the scheduler's.
"""

from __future__ import annotations

import heapq
import itertools
from collections import Counter
from collections.abc import Callable, Mapping

from orchestrator.scheduling.active_runs import TaskInstance
from orchestrator.state import TaskState

#: (-priority, run queued at, task order, tie, run id, task id, map index)
_ReadyEntry = tuple[int, float, int, int, str, str, int]


class SlotLedger:
    """The ready heap, and the slots and pool slots that running task instances hold."""

    def __init__(self, *, slots: int, pools: Mapping[str, int]) -> None:
        self.slots = slots
        self.pools = dict(pools)
        self.pool_used: Counter[str] = Counter()
        self.used = 0
        self._ready: list[_ReadyEntry] = []
        self._tie = itertools.count()

    def push(self, ti: TaskInstance) -> None:
        """The instance waits for a slot."""
        entry = (
            -ti.priority,
            ti.run.queued_at,
            ti.run.order[ti.task_id],
            next(self._tie),
            ti.run.run_id,
            ti.task_id,
            ti.map_index,
        )
        heapq.heappush(self._ready, entry)

    def claim(
        self,
        lookup: Callable[[str, str, int], TaskInstance | None],
        start: Callable[[TaskInstance], None],
    ) -> list[TaskInstance]:
        """Start waiting instances while slots are free, each that fits taking its slot.

        `start` runs before the next instance is looked at: a second entry for an instance
        that started meanwhile finds it no longer scheduled, and is dropped.
        """
        started: list[TaskInstance] = []
        blocked = []
        while self._ready and self.used < self.slots:
            entry = heapq.heappop(self._ready)
            ti = lookup(entry[4], entry[5], entry[6])
            if ti is None or ti.state is not TaskState.SCHEDULED:
                continue  # cancelled or already moved on
            if not self._fits(ti):
                blocked.append(entry)
                continue
            start(ti)
            self.take(ti, +1)
            started.append(ti)
        for entry in blocked:
            heapq.heappush(self._ready, entry)
        return started

    def take(self, ti: TaskInstance, sign: int) -> None:
        """Count a slot taken (`+1`) or given back (`-1`) by the instance."""
        self.used += sign
        self.pool_used[ti.task.options.pool] += sign * ti.task.options.pool_slots
        ti.run.running += sign

    def _fits(self, ti: TaskInstance) -> bool:
        options = ti.task.options
        pool_size = self.pools.get(options.pool, self.slots)
        if self.pool_used[options.pool] + options.pool_slots > pool_size:
            return False
        return ti.run.running < ti.run.dag.max_active_tasks
