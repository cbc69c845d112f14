"""Triggers: what a task waits on, as a value that can be stored and rebuilt.

```python
@dataclass(frozen=True, kw_only=True)
class FileTrigger(Trigger):
    directory: str
    pattern: str = "*"

    async def run(self) -> AsyncIterator[TriggerEvent]:
        ...
        yield TriggerEvent({"path": path}, dedup_key=f"{path}:{size}:{mtime_ns}")
```

The contract, written once, here:

- A trigger is a frozen dataclass of JSON-safe fields. `serialize()` is derived from the class
  and its fields, never hand-written, so what is stored cannot drift from what runs; the
  registry (`load_trigger`) rebuilds it and admits only `Trigger` subclasses.
- `run()` is an async generator of `TriggerEvent`s. It must never block the event loop: a
  blocking call goes to a thread (`anyio.to_thread.run_sync`). The triggerer hosts thousands of
  triggers in one loop, and a watchdog names the one that blocks it.
- It may run twice (after a restart, or when the same event is seen again): events carry a
  `dedup_key` naming the *version* of what changed, so a consumer can tell a repeat.
- It always gets cleaned up: the triggerer closes the generator (`aclose`) when it has the
  event it needed, when the task's deferral times out, and when the engine stops, so code in a
  `finally:` runs every time.
- A trigger that raises, or ends without an event, fails only its own task instance.
- `poll()` is the same check done once, without waiting, for sensors in `poke` and
  `reschedule` mode. Triggers whose source cannot be checked once need not implement it.
- `sharing()` may offer a cheaper way to wait, beside `run()`: many triggers of one kind in
  one `SharedHost` (one timer heap, one watch per folder) instead of a task each. A host keeps
  the contract above for each trigger it holds, and never needs the cursor.

Time, input policy and read access to the store come from `current_runtime()`, set by the
triggerer for each trigger it hosts, so a trigger stays a plain value.
"""

from __future__ import annotations

import contextvars
import dataclasses
import functools
import importlib
import json
import math
import sys
import types
import typing
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Protocol, TypeVar

from orchestrator.errors import TriggerLoadError

if TYPE_CHECKING:  # kept out of worker processes' imports: they only build triggers
    from anyio.streams.memory import MemoryObjectReceiveStream

    from orchestrator.changes import Change
    from orchestrator.clock import Clock
    from orchestrator.policy import InputPolicy
    from orchestrator.store.records import RunRecord, TaskInstanceRecord

JSON = Any  # a value `json.dumps` accepts: dict, list, str, int, float, bool or None


@dataclass(frozen=True)
class TriggerEvent:
    """What a trigger saw: a JSON-safe payload, and a key naming the version of what changed.

    Two events with one `dedup_key` are the same event seen twice (a restart, a rescan).
    """

    payload: JSON = None
    dedup_key: str | None = None

    def __post_init__(self) -> None:
        check_json_safe(self.payload, what="a trigger event's payload")


@dataclass(frozen=True, kw_only=True)
class Trigger:
    """Base class of every trigger. Subclass as a frozen, keyword-only dataclass."""

    #: Set where the class's `__post_init__` admits only JSON scalars: `serialize` skips its check.
    fields_checked_as_json: ClassVar[bool] = False

    def serialize(self) -> tuple[str, dict[str, JSON]]:
        """`(classpath, kwargs)`: all that is stored, and all `load_trigger` needs."""
        cls: type = type(self)  # as a plain type: functools.cache wants it hashable
        classpath, names, checked = _stored_form(cls)
        if checked:  # plain scalars, checked when it was made
            return classpath, {name: getattr(self, name) for name in names}
        kwargs = {}
        for name in names:  # most fields are scalars: a call for each was a third of the cost
            value = getattr(self, name)
            kwargs[name] = _to_json(value) if isinstance(value, tuple) else value
        check_json_safe(kwargs, what=f"the fields of {type(self).__name__}")
        return classpath, kwargs

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """Yield events as they happen. Runs until the triggerer closes it."""
        raise NotImplementedError(f"{type(self).__name__} must implement run()")
        yield  # pragma: no cover - makes this an async generator, as subclasses are

    async def poll(self) -> TriggerEvent | None:
        """Check once, without waiting: the event if the condition holds now, else None."""
        raise NotImplementedError(
            f"{type(self).__name__} cannot check once; use a sensor in 'deferrable' mode"
        )

    def sharing(self) -> Sharing | None:
        """How this trigger can wait in a host shared with others of its kind, or None.

        None (the default) hosts it in a task of its own, running `run()`.
        """
        return None

    def describe(self) -> str:
        """One line for logs and `triggers list`: the class and its fields."""
        fields = ", ".join(
            f"{f.name}={getattr(self, f.name)!r}" for f in dataclasses.fields(self) if f.repr
        )
        return f"{type(self).__name__}({fields})"


def classpath_of(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def load_trigger(classpath: str, kwargs: Mapping[str, JSON]) -> Trigger:
    """Rebuild a stored trigger. Raises `TriggerLoadError` saying what is wrong with it."""
    cls = _import_class(classpath)
    if not (isinstance(cls, type) and issubclass(cls, Trigger)):
        raise TriggerLoadError(f"{classpath} is not a Trigger subclass; refusing to run it")
    _check_frozen_dataclass(cls)
    if not isinstance(kwargs, Mapping):
        raise TriggerLoadError(f"the arguments of {classpath} must be a JSON object")
    try:
        return cls(**_from_json(cls, kwargs))
    except (TypeError, ValueError) as error:
        raise TriggerLoadError(f"cannot build {classpath} from {dict(kwargs)!r}: {error}") from None


def _import_class(classpath: str) -> object:
    # A class nested in another has a dotted qualname: try the longest importable module.
    parts = classpath.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        module_name, qualname = ".".join(parts[:cut]), ".".join(parts[cut:])
        module = sys.modules.get(module_name)
        if module is None:
            try:
                module = importlib.import_module(module_name)
            except ImportError:
                continue
            except Exception as error:
                raise TriggerLoadError(
                    f"importing {module_name} for trigger {classpath} failed: {error!r}"
                ) from None
        value: object = module
        for name in qualname.split("."):
            value = getattr(value, name, None)
        if value is not None:
            return value
    raise TriggerLoadError(f"there is no trigger class {classpath!r} (not importable)")


def _check_frozen_dataclass(cls: type) -> None:
    params = getattr(cls, "__dataclass_params__", None)
    if params is None or not params.frozen or "__dataclass_fields__" not in cls.__dict__:
        raise TriggerLoadError(
            f"{classpath_of(cls)} must be decorated with @dataclass(frozen=True, kw_only=True)"
            " so that its fields are all that is stored"
        )


@functools.cache
def _stored_form(cls: type) -> tuple[str, tuple[str, ...], bool]:
    """Once per class, not per trigger: classpath, fields stored, `fields_checked_as_json`."""
    _check_frozen_dataclass(cls)
    checked = cls.__dict__.get("fields_checked_as_json") is True  # a subclass may add fields
    return classpath_of(cls), tuple(f.name for f in dataclasses.fields(cls)), checked


def check_json_safe(value: JSON, *, what: str) -> None:
    """Raise `TriggerLoadError` unless `value` is plain JSON (no NaN, no objects, str keys)."""
    if _is_flat_json(value):
        return
    try:
        json.dumps(value, allow_nan=False)
        _check_keys(value)
    except (TypeError, ValueError) as error:
        raise TriggerLoadError(f"{what} must be JSON-safe: {error}") from None


_SCALARS = frozenset({str, int, bool, type(None)})


def _is_flat_json(value: Any) -> bool:
    """A dict of plain scalars under str keys, as most triggers' fields are: JSON at a glance.

    Exact types only (a `str` subclass may serialize differently): anything else gets the
    full check, which costs a `json.dumps` and a walk, too much for 100,000 sensors at once.
    """
    if type(value) is not dict:
        return False
    for key, item in value.items():
        if type(key) is not str:
            return False
        if type(item) is float:
            if not math.isfinite(item):
                return False
        elif type(item) not in _SCALARS:
            return False
    return True


def _check_keys(value: Any) -> None:
    """`json.dumps` turns `{1: x}` into `{"1": x}`: what is stored would not be what was given."""
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"keys must be strings, got {key!r}")
            _check_keys(item)
    elif isinstance(value, list | tuple):
        for item in value:
            _check_keys(item)


def _to_json(value: Any) -> Any:
    """JSON has no tuples: tuples become lists; the rest is as it is (`check_json_safe` judges)."""
    if isinstance(value, tuple):
        return [_to_json(item) for item in value]
    return value


def _from_json(cls: type, kwargs: Mapping[str, JSON]) -> dict[str, Any]:
    """JSON has no tuples: give tuple-typed fields their tuples back, so a round trip is equal."""
    tuple_fields = _tuple_fields(cls)
    rebuilt = dict(kwargs)
    for name, value in kwargs.items():
        if isinstance(value, list) and name in tuple_fields:
            rebuilt[name] = tuple(value)
    return rebuilt


@functools.cache
def _tuple_fields(cls: type) -> frozenset[str]:
    """Once per class: resolving annotations compiles them, too slow for 100,000 re-arms."""
    try:
        hints = typing.get_type_hints(cls)
    except Exception:  # unresolvable annotations: pass the values as stored
        return frozenset()
    return frozenset(name for name, hint in hints.items() if _is_tuple_type(hint))


def _is_tuple_type(hint: Any) -> bool:
    if typing.get_origin(hint) is tuple or hint is tuple:
        return True
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return any(_is_tuple_type(arg) for arg in typing.get_args(hint))
    return False


# -- the runtime: what a running trigger may use --------------------------------------------------


ChangeSubscription = AbstractAsyncContextManager["MemoryObjectReceiveStream[Change]"]


def _system_clock() -> Clock:
    from orchestrator.clock import SystemClock

    return SystemClock()


def _open_policy() -> InputPolicy:
    from orchestrator.policy import InputPolicy

    return InputPolicy()


class StateReader(Protocol):
    """Read access to runs and task instances, for triggers that wait on other runs."""

    async def get_run(self, run_id: str) -> RunRecord | None: ...

    async def list_runs(self, *, dag_id: str | None = None, limit: int = 50) -> list[RunRecord]: ...

    async def list_task_instances(self, run_id: str) -> list[TaskInstanceRecord]: ...


@dataclass(frozen=True)
class TriggerRuntime:
    """The services a trigger uses while it runs: the clock, the input policy, state access.

    `changes()` streams every state change the engine commits (for event-driven waits on other
    runs); `cursor` is what the trigger last saved with `save_cursor` (it survives restarts).
    """

    clock: Clock = field(default_factory=_system_clock)
    policy: InputPolicy = field(default_factory=_open_policy)
    state: StateReader | None = None
    changes: Callable[[], ChangeSubscription] | None = None
    cursor: JSON = None
    save_cursor: Callable[[JSON], Awaitable[None]] | None = None


_runtime: contextvars.ContextVar[TriggerRuntime] = contextvars.ContextVar("trigger_runtime")


def current_runtime() -> TriggerRuntime:
    """The runtime of the trigger running in this task; defaults outside a triggerer."""
    try:
        return _runtime.get()
    except LookupError:
        return TriggerRuntime()


def set_runtime(runtime: TriggerRuntime) -> contextvars.Token[TriggerRuntime]:
    """Make `runtime` current for this task (the triggerer calls this in each trigger's task)."""
    return _runtime.set(runtime)


# -- sharing: many triggers of one kind waiting in one task ---------------------------------------

Waiter = TypeVar("Waiter", bound=Trigger)
#: How a host reports that a trigger's wait ended: its first event, or what made it fail.
Ending = Callable[[Hashable, "TriggerEvent | Exception"], None]


@dataclass(frozen=True)
class Sharing:
    """Where a trigger can wait with others (`Trigger.sharing()`): equal ones share one host."""

    host: type[SharedHost[Any]]
    key: Hashable = None  # what the triggers of one host have in common (a folder, ...)


class SharedHost(Generic[Waiter]):
    """Many triggers of one kind, waiting in one task: what a task and a cancel scope per
    trigger (2 to 3 KiB each) would cost, paid once per host.

    The triggerer `add`s and `discard`s triggers, each under a token of its own, and runs
    `serve()` in a task. The host `end`s each trigger once, with its first event or with the
    exception that ended its wait; that fails only its own task. `serve()` returns once no
    trigger is left, and the host is `closed` from then on (the next trigger gets a new host).
    If `serve()` raises, every trigger still in the host fails with that error.
    """

    def __init__(self, key: Hashable, runtime: TriggerRuntime, ending: Ending) -> None:
        self.key = key
        self.runtime = runtime
        self.triggers: dict[Hashable, Waiter] = {}
        self.closed = False
        self._ending = ending

    def add(self, token: Hashable, trigger: Waiter) -> None:
        self.triggers[token] = trigger
        self._added(token, trigger)

    def discard(self, token: Hashable) -> None:
        """Stop waiting for `token`'s trigger (it reports nothing)."""
        trigger = self.triggers.pop(token, None)
        if trigger is not None:
            self._discarded(token, trigger)

    def end(self, token: Hashable, result: TriggerEvent | Exception) -> None:
        """`token`'s wait is over: forget it and report `result`."""
        if token in self.triggers:
            self.discard(token)
            self._ending(token, result)

    def end_all(self, error: Exception) -> None:
        """Every trigger here fails with `error`, and the host takes no more."""
        self.closed = True
        for token in list(self.triggers):
            self.end(token, error)

    def waiting(self) -> int:
        """How many of the triggers wait on their source now (the rest are being set up)."""
        return len(self.triggers)

    def describe(self) -> str:
        """One line for logs and the loop's watchdog, made only when one is needed."""
        return f"{type(self).__name__}({self.key!r}) hosting {len(self.triggers)} trigger(s)"

    async def serve(self) -> None:
        """Serve the triggers until none is left."""
        raise NotImplementedError(f"{type(self).__name__} must implement serve()")

    def finished(self) -> bool:
        """True, and the host `closed`, once no trigger is left: `serve()` then returns."""
        if not self.triggers:
            self.closed = True
        return self.closed

    def _added(self, token: Hashable, trigger: Waiter) -> None: ...

    def _discarded(self, token: Hashable, trigger: Waiter) -> None: ...
