"""The rows of the store, as frozen values. Times are float seconds since the epoch (UTC)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from orchestrator.quickinit import quick_init
from orchestrator.state import RunState, TaskState

# The columns `set_task_state` may set beside the state. Checked here, where the batch is built,
# so a typo fails at its call site; the SQLite store checks again because they become SQL.
TASK_STATE_FIELDS = frozenset(
    {
        "try_number",
        "max_tries",
        "queued_at",
        "started_at",
        "ended_at",
        "next_retry_at",
        "error",
        "next_call",
        "interrupted_tries",
    }
)


def check_task_state_fields(fields: Iterable[str]) -> None:
    """Raise `ValueError` naming the first field `set_task_state` may not set."""
    if TASK_STATE_FIELDS.issuperset(fields):
        return  # the usual answer, in one C call (two per sensor armed)
    for name in fields:
        if name not in TASK_STATE_FIELDS:
            allowed = ", ".join(sorted(TASK_STATE_FIELDS))
            raise ValueError(f"set_task_state cannot set {name!r}; it may set: {allowed}")


@dataclass(frozen=True, kw_only=True)
class DagRecord:
    dag_id: str
    fileloc: str
    description: str = ""
    is_paused: bool = False
    updated_at: float = 0.0


@dataclass(frozen=True, kw_only=True)
class ImportErrorRecord:
    """A DAG file (or one DAG in it) that could not be used, with the line to look at."""

    fileloc: str
    line: int | None
    message: str
    recorded_at: float


@dataclass(frozen=True, kw_only=True)
class RunRecord:
    run_id: str
    dag_id: str
    state: RunState
    conf: dict[str, Any]
    run_type: str = "manual"  # manual | scheduled | event | backfill
    dedup_key: str | None = None  # UNIQUE per DAG when set: one event, one run
    logical_date: float | None = None  # scheduled and backfill runs: their data interval's start
    queued_at: float = 0.0
    started_at: float | None = None
    ended_at: float | None = None
    data_interval_end: float | None = None  # ... and its end
    damaged: str | None = None  # why part of the stored row cannot be read (conf then {})


@quick_init  # made by the hundred thousand when sensors arm and re-arm
@dataclass(frozen=True, kw_only=True)
class TaskInstanceRecord:
    run_id: str
    task_id: str
    map_index: int = -1  # -1 for a task that is not expanded
    state: TaskState = TaskState.NONE
    try_number: int = 0  # tries started so far
    max_tries: int = 1
    pool: str = "default"
    priority: int = 1
    queued_at: float | None = None
    started_at: float | None = None
    ended_at: float | None = None
    next_retry_at: float | None = None
    error: str | None = None  # one line: why it failed, was skipped or cancelled
    # Deferred or resuming: how it goes on (JSON text: target, kwargs, on_timeout, event).
    next_call: str | None = None
    # Tries cut short by the daemon's death (kill -9, power cut): re-run without using a retry,
    # up to `max_interrupted_tries`.
    interrupted_tries: int = 0
    damaged: str | None = None  # next_call cannot be read (it is then None)

    @property
    def key(self) -> tuple[str, str, int]:
        return (self.run_id, self.task_id, self.map_index)


@quick_init  # made by the hundred thousand when sensors arm and re-arm
@dataclass(frozen=True, kw_only=True)
class TryRecord:
    """One attempt of a task instance, with its own log file."""

    run_id: str
    task_id: str
    map_index: int
    try_number: int
    state: TaskState  # running while it runs, then its outcome
    started_at: float
    log_path: str
    ended_at: float | None = None
    error: str | None = None
    pid: int | None = None


@quick_init  # made by the hundred thousand when sensors arm and re-arm
@dataclass(frozen=True, kw_only=True)
class TriggerRecord:
    """A trigger a deferred task instance waits on, as stored: rebuilt from it after a restart."""

    run_id: str
    task_id: str
    map_index: int
    classpath: str
    kwargs: dict[str, Any]
    created_at: float
    timeout_at: float | None = None
    cursor: Any = None  # what the trigger saved with `save_cursor` (JSON)
    damaged: str | None = None  # kwargs or cursor cannot be read (then {} and None)

    @property
    def key(self) -> tuple[str, str, int]:
        return (self.run_id, self.task_id, self.map_index)


@dataclass(frozen=True, kw_only=True)
class EventRecord:
    """Something that happened for a DAG (a file landed, an asset was updated, ...).

    `run_id` is the run it started; None while it waits for its batch window or debounce.
    UNIQUE (dag_id, dedup_key) in the store makes a redelivered event a no-op.
    """

    dag_id: str
    dedup_key: str
    payload: dict[str, Any]
    received_at: float
    source: str = ""  # which of the DAG's run triggers saw it
    run_id: str | None = None
    event_id: int | None = None  # assigned by the store
    damaged: str | None = None  # the payload cannot be read (it is then {})


@dataclass(frozen=True, kw_only=True)
class RunSourceRecord:
    """A DAG's run trigger as the daemon hosts it: what it waits on, since when, where it got to."""

    dag_id: str
    source: str  # the trigger's one-line description, unique per DAG
    classpath: str
    kwargs: dict[str, Any]
    armed_at: float
    cursor: Any = None
    error: str | None = None  # why it is not watching right now (it is retried)
    damaged: str | None = None  # kwargs or cursor cannot be read (then {} and None)


@dataclass(frozen=True, kw_only=True)
class TokenRecord:
    """An API bearer token as stored: the SHA-256 of its secret, never the secret itself.

    `token_id` is public (lists show it, `tokens revoke` takes it); the secret is shown once,
    when the token is created, and cannot be recovered from the store.
    """

    token_id: str
    name: str
    scope: str  # read | trigger | admin (see orchestrator.api.tokens.SCOPES)
    secret_hash: str  # hex SHA-256 of the secret part of the token
    created_at: float
    expires_at: float | None = None  # None: never expires
    revoked_at: float | None = None


@dataclass(frozen=True, kw_only=True)
class WebhookRecord:
    """A webhook definition: deliveries to `POST /hooks/<name>` start runs of `dag_id`.

    The secret is never stored: `secret_env` or `secret_file` (exactly one) says where the
    daemon reads it, each time, so rotating a file needs no restart.
    """

    name: str
    dag_id: str
    kind: str = "github"  # github | standard | hmac
    secret_env: str | None = None
    secret_file: str | None = None  # absolute; one secret per line (several: rotation)
    filters: list[tuple[str, str]] = field(default_factory=list)  # (path, glob) pairs
    conf_map: dict[str, str] = field(default_factory=dict)  # run conf key -> path
    signature_header: str = "X-Signature"  # kind hmac: where the signature is
    delivery_header: str = "Idempotency-Key"  # kind hmac: the delivery id (optional)
    rate: float | None = None  # deliveries per second; None: Settings.webhook_rate
    created_at: float = 0.0
    damaged: str | None = None  # filters or conf_map cannot be read: it takes no delivery


@dataclass(frozen=True, kw_only=True)
class DagTaskInstance:
    """A task instance with the DAG its run belongs to (a list across DAGs shows both)."""

    dag_id: str
    task_instance: TaskInstanceRecord


@dataclass(frozen=True, kw_only=True)
class DagGrid:
    """A DAG's grid: its runs, newest first, and every task instance of each of them.

    `task_instances` has an entry for each run of `runs` (empty for a run without any), in the
    order they were created: the DAG's task order, then the elements of expanded tasks.
    """

    runs: list[RunRecord]
    task_instances: dict[str, list[TaskInstanceRecord]]

    def task_ids(self) -> list[str]:
        """The grid's rows: every task id once, in the newest run's order, older ones' after."""
        seen: dict[str, None] = {}
        for run in self.runs:
            seen.update((ti.task_id, None) for ti in self.task_instances[run.run_id])
        return list(seen)
