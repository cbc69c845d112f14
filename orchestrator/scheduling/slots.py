"""Slots: which scheduled task instances wait for one, and how many slots and pool slots are taken.

Instances wait in order: highest priority first, then the oldest run, then the task's place in
its DAG, then first come. A waiting instance gets a slot only while its pool and its DAG's
`max_active_tasks` have room; one that does not fit waits for the next step, so a full pool
holds back only its own tasks. The ledger only counts and orders: what starting a task instance
records is the scheduler's.

Waiting instances are grouped by what decides whether they fit (run, pool, pool slots), one heap
per group, and a heap of the groups' heads orders them all. When a group's head does not fit,
none of the group does until something ends, so the whole group is passed over at once: with
100,000 expanded instances held back by `max_active_tasks`, a step looks at one head, not at
every one of them.
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
#: (run id, pool, pool slots): instances of a group fit, or do not fit, together.
_GroupKey = tuple[str, str, int]


class SlotLedger:
    """The ready heap, and the slots and pool slots that running task instances hold."""

    def __init__(self, *, slots: int, pools: Mapping[str, int]) -> None:
        self.slots = slots
        self.pools = dict(pools)
        self.pool_used: Counter[str] = Counter()
        self.used = 0
        self._groups: dict[_GroupKey, list[_ReadyEntry]] = {}
        # Each group's head, and stale records (skipped when popped): the one record that
        # counts for a group is the one `_listed` names.
        self._heads: list[tuple[_ReadyEntry, _GroupKey]] = []
        self._listed: dict[_GroupKey, _ReadyEntry] = {}
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
        options = ti.task.options
        key = (ti.run.run_id, options.pool, options.pool_slots)
        group = self._groups.setdefault(key, [])
        heapq.heappush(group, entry)
        if group[0] is entry:
            self._list_head(key, entry)

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
        blocked: list[tuple[_ReadyEntry, _GroupKey]] = []
        while self._heads and self.used < self.slots:
            head = heapq.heappop(self._heads)
            entry, key = head
            if self._listed.get(key) is not entry:
                continue  # a former head: started, dropped or no longer first
            ti = lookup(entry[4], entry[5], entry[6])
            if ti is None or ti.state is not TaskState.SCHEDULED:
                self._pop_head(key)  # cancelled or already moved on
                continue
            if not self._fits(ti):
                blocked.append(head)  # and with it the rest of its group
                continue
            self._pop_head(key)
            start(ti)
            self.take(ti, +1)
            started.append(ti)
        for head in blocked:
            heapq.heappush(self._heads, head)
        return started

    def _list_head(self, key: _GroupKey, entry: _ReadyEntry) -> None:
        self._listed[key] = entry
        heapq.heappush(self._heads, (entry, key))

    def _pop_head(self, key: _GroupKey) -> None:
        group = self._groups[key]
        heapq.heappop(group)
        if group:
            self._list_head(key, group[0])
        else:
            del self._groups[key], self._listed[key]

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
