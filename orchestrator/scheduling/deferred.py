"""The scheduler's decisions about deferred task instances: defer, fire, fail, time out.

A deferral commits in one transaction: the task instance moves to `deferred` with how it will
go on (`next_call`), its try is marked deferred, and the trigger row is stored. Only after the
commit does the engine start hosting the trigger (`armings`) and its timeout (`timers`). When
the trigger fires, the event and the resume (or, without a resume target, the success) commit
together; leaving `deferred` deletes the trigger row in the same transaction
(`Transitions.move`), whatever the reason.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

from orchestrator.authoring.defer import Defer, Deferral, deferral_of
from orchestrator.authoring.references import resolve_refs, surely_plain
from orchestrator.errors import OrchestratorError, TriggerLoadError, error_line
from orchestrator.execution.results import encode_result
from orchestrator.scheduling.active_runs import TaskInstance, Transitions
from orchestrator.state import TaskState
from orchestrator.store.records import TriggerRecord, TryRecord
from triggers.base import Trigger, load_trigger

TaskKey = tuple[str, str, int]


@dataclass(frozen=True)
class Timer:
    """Something due for a task instance at `due`: a retry backoff ended, a deferral timed out."""

    due: float
    key: TaskKey
    kind: str  # "retry" | "timeout"


class Arming(NamedTuple):
    """A trigger to start hosting once the deferral that needs it has committed.

    A named tuple, not a frozen dataclass: one is made per sensor armed, at a third of the cost.
    """

    key: TaskKey
    trigger: Trigger
    cursor: Any = None


def _next_call(deferral: Deferral) -> tuple[dict[str, Any], str]:
    """How the instance goes on (never changed in place), and its JSON text."""
    if deferral.resume is None and not deferral.resume_kwargs:
        return _finishing_call(deferral.on_timeout, deferral.timeout)
    return _call_and_text(
        deferral.resume, deferral.resume_kwargs, deferral.on_timeout, deferral.timeout
    )


# A deferral that finishes with its event (no resume target) goes on in one of a few ways: a
# sensor's class sets its timeout and what a timeout does. Those next calls are shared, read
# only, and encoded once, not a dict and a `json.dumps` per sensor; a few hundred at most.
@functools.lru_cache(maxsize=256)
def _finishing_call(on_timeout: str, timeout: float | None) -> tuple[dict[str, Any], str]:
    return _call_and_text(None, {}, on_timeout, timeout)


def _call_and_text(
    target: str | None, kwargs: dict[str, Any], on_timeout: str, timeout: float | None
) -> tuple[dict[str, Any], str]:
    call = {"target": target, "kwargs": kwargs, "on_timeout": on_timeout, "timeout": timeout}
    return call, json.dumps(call)


class DeferralDecisions:
    """The deferral half of `Scheduler` (a mixin: it uses the scheduler's own helpers)."""

    if TYPE_CHECKING:
        timers: list[Timer]
        armings: list[Arming]
        result_max_bytes: int

        def _instance(self, run_id: str, task_id: str, map_index: int) -> TaskInstance | None: ...
        def _fail(self, ti: TaskInstance, error: str, tx: Transitions) -> str: ...
        def _succeed(self, ti: TaskInstance, result_json: str, tx: Transitions) -> str | None: ...
        def _settle(
            self, ti: TaskInstance, state: TaskState, tx: Transitions, **fields: Any
        ) -> None: ...
        def _end_try(
            self, ti: TaskInstance, state: TaskState, error: str | None, tx: Transitions
        ) -> None: ...
        def _begin_try(self, ti: TaskInstance) -> None: ...
        def _record_try(self, ti: TaskInstance, state: TaskState, tx: Transitions) -> None: ...
        @staticmethod
        def _try_record(ti: TaskInstance, state: TaskState, now: float) -> TryRecord: ...
        def _push_ready(self, ti: TaskInstance) -> None: ...

    # -- deferring ------------------------------------------------------------------------------

    def _defer_at_start(self, ti: TaskInstance, tx: Transitions) -> None:
        """A deferrable sensor: its first try waits on its trigger, never taking a slot.

        The try opens straight into `deferred`, with how it goes on and its trigger, as one
        bulk write shared with the sensors beside it (`Transitions.open_deferral`).
        """
        self._begin_try(ti)
        try:
            deferral, trigger = self._first_deferral(ti)
        except Exception as error:
            self._record_try(ti, TaskState.DEFERRED, tx)
            self._fail(ti, f"cannot start waiting: {error_line(error)}", tx)
            return
        next_call = self._wait_on(ti, deferral, trigger, tx.now)
        tx.open_deferral(
            ti,
            self._try_record(ti, TaskState.DEFERRED, tx.now),
            self._trigger_record(ti, deferral, tx.now),
            started_at=tx.now,
            try_number=ti.try_number,
            error=None,
            next_call=next_call,
        )

    @staticmethod
    def _first_deferral(ti: TaskInstance) -> tuple[Deferral, Trigger]:
        context = ti.context(ti.log_path)
        inputs = ti.task.inputs
        if not surely_plain(inputs):  # else resolving would copy it, for a sensor that only reads
            inputs = resolve_refs(inputs, ti.run.result_view(), context)
        request = ti.task.first_deferral(inputs, context)
        if isinstance(request, Defer):
            # The sensor's own trigger: rebuilding it from what is stored would make the same
            # value again, at a third of the cost of arming.
            return deferral_of(request, None), request.trigger
        return request, load_trigger(request.classpath, request.kwargs)

    def _defer_stored(self, ti: TaskInstance, deferral_json: str, tx: Transitions) -> str | None:
        """A try returned `Defer(...)`: its slot is already free; now it waits on the trigger."""
        try:
            deferral = Deferral.from_json(deferral_json)
        except (ValueError, TypeError) as error:
            return self._fail(ti, f"the task's deferral cannot be read: {error}", tx)
        self._end_try(ti, TaskState.DEFERRED, None, tx)
        try:
            trigger = load_trigger(deferral.classpath, deferral.kwargs)
        except TriggerLoadError as error:
            return self._fail(ti, f"TriggerLoadError: {error}", tx)
        tx.move(ti, TaskState.DEFERRED, next_call=self._wait_on(ti, deferral, trigger, tx.now))
        tx.batch.add_trigger(self._trigger_record(ti, deferral, tx.now))
        return None

    def _wait_on(self, ti: TaskInstance, deferral: Deferral, trigger: Trigger, now: float) -> str:
        """Note how the instance goes on; its trigger and timeout start once the batch commits.

        Returns the next call as stored in the instance's row.
        """
        ti.timeout_at = now + deferral.timeout if deferral.timeout else None
        ti.next_call, text = _next_call(deferral)
        key = ti.key
        self.armings.append(Arming(key, trigger))
        if ti.timeout_at is not None:
            self.timers.append(Timer(ti.timeout_at, key, "timeout"))
        return text

    @staticmethod
    def _trigger_record(ti: TaskInstance, deferral: Deferral, now: float) -> TriggerRecord:
        run_id, task_id, map_index = ti.key
        return TriggerRecord(
            run_id=run_id,
            task_id=task_id,
            map_index=map_index,
            classpath=deferral.classpath,
            kwargs=deferral.kwargs,
            created_at=now,
            timeout_at=ti.timeout_at,
        )

    # -- how a deferral ends ----------------------------------------------------------------------

    def fire(self, key: TaskKey, payload: Any, tx: Transitions) -> str | None:
        """The trigger fired: finish with the event, or schedule the resume on a slot."""
        ti = self._deferred(key)
        if ti is None or ti.next_call is None:
            return None
        if ti.next_call.get("target") is None:
            try:
                text = encode_result(payload, task_id=ti.task_id, limit=self.result_max_bytes)
            except OrchestratorError as error:
                return self._fail(ti, str(error), tx)
            return self._succeed(ti, text, tx)
        ti.next_call = {**ti.next_call, "event": payload}
        tx.move(ti, TaskState.SCHEDULED, next_call=json.dumps(ti.next_call))
        self._push_ready(ti)
        return None

    def fail_deferral(self, key: TaskKey, error: str, tx: Transitions) -> str | None:
        """The trigger raised or ended without an event: the try fails (and may retry)."""
        ti = self._deferred(key)
        return None if ti is None else self._fail(ti, error, tx)

    def time_out(self, key: TaskKey, due: float, tx: Transitions) -> str | None:
        """A deferral's timeout came: fail (retries apply) or skip, as the deferral said."""
        ti = self._deferred(key)
        if ti is None or ti.timeout_at != due or ti.next_call is None:
            return None  # a timer of an earlier deferral
        waited = ti.next_call.get("timeout")
        error = f"TriggerTimeoutError: no event within {waited:g}s"
        if ti.next_call.get("on_timeout") == "skip":
            self._end_try(ti, TaskState.SKIPPED, error, tx)
            self._settle(ti, TaskState.SKIPPED, tx, error=error)
            return None
        return self._fail(ti, error, tx)

    def _deferred(self, key: TaskKey) -> TaskInstance | None:
        ti = self._instance(*key)
        return ti if ti is not None and ti.state is TaskState.DEFERRED else None
