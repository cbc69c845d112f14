"""Wait for another DAG's run (or one task of it) to reach a state.

The wait is event-driven: the trigger subscribes to the engine's change feed and reacts to the
changes of the run it waits on. The store is read once at the start (the run may be done
already), when a change may reveal a run it has not found yet, and every `check_interval`
seconds, because a run driven by another process never shows in this process's feed.
"""

from __future__ import annotations

import math
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream

from orchestrator.changes import Change, EventRecorded, RunChanged, TaskChanged
from orchestrator.clock import Clock
from orchestrator.errors import TriggerError
from orchestrator.state import RunState, TaskState
from orchestrator.store.records import RunRecord
from triggers.base import StateReader, Trigger, TriggerEvent, TriggerRuntime, current_runtime

_DEFAULT_FAILED_STATES = ("failed", "upstream_failed")
_RUN_SEARCH_PAGE = 100  # runs read per look for a logical date; grows tenfold each time

Feed = AbstractAsyncContextManager[MemoryObjectReceiveStream[Change]]


@dataclass(frozen=True, kw_only=True)
class ExternalRunTrigger(Trigger):
    """Fire when a run of `dag_id`, or its task `task_id`, reaches one of `states`.

    Which run: `run_id` if given; else the newest run of `dag_id` whose logical date is
    `logical_date`; else the newest run of `dag_id`. The first run found is the one waited on.
    Reaching one of `failed_states`, or a final state that is not in `states`, raises
    `TriggerError`: that run can no longer give what the waiting task needs.
    """

    dag_id: str
    run_id: str | None = None
    logical_date: float | None = None
    task_id: str | None = None
    map_index: int = -1
    states: tuple[str, ...] = ("success",)
    failed_states: tuple[str, ...] = _DEFAULT_FAILED_STATES  # for a run: ("failed",)
    check_interval: float = 60.0

    def __post_init__(self) -> None:
        _check_identity(self)
        _set(self, "logical_date", _optional_seconds(self.logical_date))
        _set(self, "check_interval", _positive_seconds(self.check_interval))
        _set(self, "states", self._state_names("states", self.states))
        _set(self, "failed_states", self._state_names("failed_states", self._failed_names()))
        self._check_states_apart()

    async def run(self) -> AsyncGenerator[TriggerEvent, None]:
        yield await self._wait()

    async def poll(self) -> TriggerEvent | None:
        watch = _Watch(self, _reader_of(current_runtime()))
        await watch.check_store()
        return watch.result()

    async def _wait(self) -> TriggerEvent:
        runtime = current_runtime()
        watch = _Watch(self, _reader_of(runtime))
        # Subscribe before reading, so a change committed between the read and the subscription
        # still arrives.
        async with _feed_of(runtime) as changes:
            await watch.check_store()
            while (event := watch.result()) is None:
                await watch.follow(changes, runtime.clock)
        return event

    # -- which run, and what state it is in -----------------------------------------------------

    async def _find_run(self, reader: StateReader, found_run_id: str | None) -> RunRecord | None:
        """The run to wait on (the one found before, if any), or None while there is none."""
        run_id = found_run_id or self.run_id
        if run_id is not None:
            return await reader.get_run(run_id)
        if self.logical_date is not None:
            return await self._newest_run_at_logical_date(reader)
        newest = await reader.list_runs(dag_id=self.dag_id, limit=1)
        return newest[0] if newest else None

    async def _newest_run_at_logical_date(self, reader: StateReader) -> RunRecord | None:
        limit = _RUN_SEARCH_PAGE
        while True:
            runs = await reader.list_runs(dag_id=self.dag_id, limit=limit)
            match = next((run for run in runs if run.logical_date == self.logical_date), None)
            if match is not None or len(runs) < limit:
                return match
            limit *= 10

    async def _state_of(self, reader: StateReader, run: RunRecord) -> str | None:
        """The run's state, or its task's (None while that task instance does not exist)."""
        if self.task_id is None:
            return run.state.value
        for ti in await reader.list_task_instances(run.run_id):
            if ti.task_id == self.task_id and ti.map_index == self.map_index:
                return ti.state.value
        return None

    def _outcome(self, run_id: str, state: str) -> TriggerEvent | TriggerError | None:
        """The event if `state` is awaited, the error if it never will be, else None."""
        if state in self.states:
            return self._event(run_id, state)
        if state in self.failed_states:
            return TriggerError(f"{self._target(run_id)} ended in {state}")
        if self._is_final(state):
            awaited = " or ".join(self.states)
            return TriggerError(
                f"{self._target(run_id)} ended in {state}, which is final: it will never be"
                f" {awaited}"
            )
        return None

    def _event(self, run_id: str, state: str) -> TriggerEvent:
        payload = {
            "dag_id": self.dag_id,
            "run_id": run_id,
            "task_id": self.task_id,
            "map_index": self.map_index,
            "state": state,
        }
        dedup_key = f"{self.dag_id}/{run_id}/{self.task_id or ''}/{state}"
        return TriggerEvent(payload=payload, dedup_key=dedup_key)

    def _target(self, run_id: str) -> str:
        if self.task_id is None:
            return f"run {run_id} of DAG {self.dag_id}"
        index = f"[{self.map_index}]" if self.map_index >= 0 else ""
        return f"task {self.task_id}{index} of run {run_id} (DAG {self.dag_id})"

    def _is_final(self, state: str) -> bool:
        if self.task_id is None:
            return RunState(state).finished
        return TaskState(state).finished

    def _is_target(self, change: Change, run_id: str) -> bool:
        """Whether `change` moved the run (or task instance) waited on."""
        if self.task_id is None:
            return isinstance(change, RunChanged) and change.run_id == run_id
        return isinstance(change, TaskChanged) and (
            change.run_id,
            change.task_id,
            change.map_index,
        ) == (run_id, self.task_id, self.map_index)

    def _may_reveal_run(self, change: Change) -> bool:
        """Whether `change` may come from the run still not found (then the store is read)."""
        if self.run_id is not None:
            return change.run_id == self.run_id
        return isinstance(change, RunChanged) and change.dag_id == self.dag_id

    # -- validation -----------------------------------------------------------------------------

    def _state_names(self, field_name: str, names: object) -> tuple[str, ...]:
        if isinstance(names, str) or not isinstance(names, tuple | list):
            raise ValueError(
                f"{field_name} must be a tuple of state names such as ('success',), not {names!r}"
            )
        kind: type[TaskState] | type[RunState] = RunState if self.task_id is None else TaskState
        allowed = [state.value for state in kind]
        for name in names:
            if name not in allowed:
                what = "run" if self.task_id is None else "task instance"
                raise ValueError(
                    f"{field_name} names {name!r}, which is not a {what} state;"
                    f" a {what} can be {', '.join(allowed)}"
                )
        return tuple(str(name) for name in names)

    def _failed_names(self) -> object:
        # One default serves both modes; upstream_failed happens only to task instances.
        if self.task_id is None and self.failed_states == _DEFAULT_FAILED_STATES:
            return (RunState.FAILED.value,)
        return self.failed_states

    def _check_states_apart(self) -> None:
        if not self.states:
            raise ValueError("states must name at least one state to wait for, e.g. ('success',)")
        both = sorted(set(self.states) & set(self.failed_states))
        if both:
            raise ValueError(f"{', '.join(both)} is in both states and failed_states; pick one")


class _Watch:
    """One wait of an `ExternalRunTrigger`: the run it found, and how the wait ended.

    Two tasks feed it (the change feed and the periodic store read); the first to settle the
    outcome stops both.
    """

    def __init__(self, trigger: ExternalRunTrigger, reader: StateReader) -> None:
        self.trigger = trigger
        self.reader = reader
        self.run_id: str | None = None  # the run waited on, once found
        self.outcome: TriggerEvent | TriggerError | None = None
        self._stop: Callable[[], None] = lambda: None

    async def check_store(self) -> None:
        """Find the run (if not yet found), read its state from the store, and settle on it."""
        run = await self.trigger._find_run(self.reader, self.run_id)
        if run is None or self.run_id not in (None, run.run_id):
            return  # none yet, or a read running beside this one already found another run
        self.run_id = run.run_id
        if run.dag_id != self.trigger.dag_id:
            self._end(_wrong_dag(run, self.trigger.dag_id))
            return
        state = await self.trigger._state_of(self.reader, run)
        if state is None and run.state.finished:
            self._end(_never_created(self.trigger._target(run.run_id), run))
        else:
            self.settle(state)

    def settle(self, state: str | None) -> None:
        """Take `state` (of the run waited on) as the latest one seen."""
        if state is not None and self.run_id is not None:
            outcome = self.trigger._outcome(self.run_id, str(state))
            if outcome is not None:
                self._end(outcome)

    def result(self) -> TriggerEvent | None:
        """The event, once settled on one; raises the error if the wait failed."""
        if isinstance(self.outcome, TriggerError):
            raise self.outcome
        return self.outcome

    async def follow(self, changes: MemoryObjectReceiveStream[Change], clock: Clock) -> None:
        """Wait on the change feed and the periodic store read until one settles the outcome."""
        try:
            async with anyio.create_task_group() as task_group:
                self._stop = task_group.cancel_scope.cancel
                task_group.start_soon(self._follow_changes, changes)
                task_group.start_soon(self._recheck_every_interval, clock)
        except BaseExceptionGroup as group:
            # Callers expect the error itself (a StoreError), not a group of one.
            raise group.exceptions[0] if len(group.exceptions) == 1 else group from None

    async def _follow_changes(self, changes: MemoryObjectReceiveStream[Change]) -> None:
        async for change in changes:
            await self._on_change(change)

    async def _on_change(self, change: Change) -> None:
        if self.run_id is None:
            if self.trigger._may_reveal_run(change):
                await self.check_store()
        elif self.trigger._is_target(change, self.run_id) and not isinstance(change, EventRecorded):
            self.settle(change.state)  # the change's own state: no store read needed
        elif isinstance(change, RunChanged) and change.run_id == self.run_id:
            if change.state.finished:  # the task instance waited on may never have been made
                await self.check_store()

    async def _recheck_every_interval(self, clock: Clock) -> None:
        # The one fixed-interval read: another process's runs never show in this feed.
        while True:
            await clock.sleep_until(clock.now() + self.trigger.check_interval)
            await self.check_store()

    def _end(self, outcome: TriggerEvent | TriggerError) -> None:
        if self.outcome is None:
            self.outcome = outcome
            self._stop()


def _reader_of(runtime: TriggerRuntime) -> StateReader:
    if runtime.state is None:
        raise TriggerError(
            "ExternalRunTrigger needs the engine's state to read other runs; run it in the"
            " triggerer, or give the runtime a state reader"
        )
    return runtime.state


def _wrong_dag(run: RunRecord, dag_id: str) -> TriggerError:
    return TriggerError(
        f"run {run.run_id} is a run of DAG {run.dag_id}, not of {dag_id}; check dag_id and run_id"
    )


def _never_created(target: str, run: RunRecord) -> TriggerError:
    return TriggerError(
        f"{target} does not exist and its run ended in {run.state.value};"
        " check task_id and map_index"
    )


def _feed_of(runtime: TriggerRuntime) -> Feed:
    return runtime.changes() if runtime.changes is not None else _silent_feed()


@asynccontextmanager
async def _silent_feed() -> AsyncIterator[MemoryObjectReceiveStream[Change]]:
    """A feed that never speaks, for a runtime without one: the periodic read does the work."""
    send, receive = anyio.create_memory_object_stream[Change]()
    with send, receive:
        yield receive


# -- field checks ---------------------------------------------------------------------------------


def _set(trigger: ExternalRunTrigger, name: str, value: object) -> None:
    object.__setattr__(trigger, name, value)  # a frozen dataclass normalises its own fields


def _check_identity(trigger: ExternalRunTrigger) -> None:
    _check_name("dag_id", trigger.dag_id, required=True)
    _check_name("run_id", trigger.run_id, required=False)
    _check_name("task_id", trigger.task_id, required=False)
    index = trigger.map_index
    if isinstance(index, bool) or not isinstance(index, int) or index < -1:
        raise ValueError(f"map_index must be -1 (not expanded) or an index from 0, not {index!r}")
    if trigger.task_id is None and index != -1:
        raise ValueError(f"map_index={index} needs a task_id: a whole run has no map index")


def _check_name(field_name: str, value: object, *, required: bool) -> None:
    if value is None and not required:
        return
    if not isinstance(value, str) or not value:
        raise ValueError(f"{field_name} must be a non-empty string, not {value!r}")


def _optional_seconds(value: object) -> float | None:
    if value is None:
        return None
    seconds = _finite(value)
    if seconds is None:
        raise ValueError(f"logical_date must be seconds since the epoch, not {value!r}")
    return seconds


def _positive_seconds(value: object) -> float:
    seconds = _finite(value)
    if seconds is None or seconds <= 0:
        raise ValueError(f"check_interval must be a number of seconds above 0, not {value!r}")
    return seconds


def _finite(value: object) -> float | None:
    """`value` as a float if it is a finite number (True is not a number here), else None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        seconds = float(value)
    except OverflowError:  # an int too large for a float
        return None
    return seconds if math.isfinite(seconds) else None
