"""The exception tree. Every error carries what the user needs to act on it.

```
OrchestratorError
├── ConfigError             a bad config file, flag or environment variable
├── DagError                a DAG that cannot be used
│   ├── DagImportError      a DAG file that does not import (file and line)
│   ├── CycleError          a dependency cycle (the cycle's path)
│   ├── DuplicateTaskError  two tasks with one id in one DAG
│   ├── UnknownTaskError    a dependency on a task id the DAG does not have
│   └── DagNotFoundError    a DAG id nobody defined
├── TaskError               raised *for* a task, recorded on its try
│   ├── TaskTimeoutError    the task ran past its execution timeout
│   ├── WorkerCrashedError  the worker process died (exit code or signal)
│   └── ResultError         a result that is not JSON or is over the size limit
├── TriggerError            a trigger that cannot be built or run
│   ├── TriggerLoadError    an unknown classpath, not a Trigger, bad or non-JSON arguments
│   └── TriggerTimeoutError a deferral waited past its timeout
├── PolicyError             untrusted input (run conf, a payload) names a blocked URL or path
├── RunError                a run request that cannot be honoured (bad conf, unknown run)
│   ├── DagPausedError      the DAG is paused, so no run of it starts
│   ├── RunNotFoundError    no run has this id
│   ├── RunLimitError       the DAG has too many queued runs, or is triggered too fast
│   └── RunStuckError       a foreground run waits on a previous run nothing here can change
├── ApiError                an HTTP request refused: `status` and a stable `code`
│   ├── AuthError           no token, a bad, expired or revoked one, or too small a scope
│   ├── SignatureError      a webhook delivery whose signature does not verify
│   └── PayloadError        a body too large, not JSON, too deeply nested, or not an object
└── StoreError              the durable state cannot be used
    ├── StoreCorruptedError the database file fails its integrity check
    ├── StateDirError       the state directory cannot be created or written
    ├── DuplicateRunError   a run for this DAG and dedup key exists (one event, one run)
    └── StateConflictError  a state change found its row in another state (or missing)
```
"""

from __future__ import annotations


class OrchestratorError(Exception):
    """Base class of every error the orchestrator raises on purpose."""


class ConfigError(OrchestratorError):
    """A config file, flag or environment variable has a value we cannot use."""


class DagError(OrchestratorError):
    """A DAG definition that cannot be used; `file` and `line` point at the cause."""

    def __init__(self, message: str, *, file: str | None = None, line: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.file = file
        self.line = line

    @property
    def location(self) -> str:
        """`file:line`, or as much of it as is known."""
        if self.file is None:
            return "<unknown>"
        return f"{self.file}:{self.line}" if self.line else self.file

    def __str__(self) -> str:
        return f"{self.location}: {self.message}" if self.file else self.message


class DagImportError(DagError):
    """A DAG file raised (or had a syntax error) while being imported."""


class CycleError(DagError):
    """The DAG's dependencies form a cycle; `path` lists its task ids, first repeated last."""

    def __init__(
        self, message: str, *, path: list[str], file: str | None = None, line: int | None = None
    ) -> None:
        super().__init__(message, file=file, line=line)
        self.path = path


class DuplicateTaskError(DagError):
    """Two tasks in one DAG share a task id."""


class UnknownTaskError(DagError):
    """A task depends on (or a branch names) a task id the DAG does not have."""


class DagNotFoundError(DagError):
    """No DAG with this id was loaded."""


class TaskError(OrchestratorError):
    """An error recorded as the outcome of a task try."""


class TaskTimeoutError(TaskError):
    """The task ran longer than its `execution_timeout` and was stopped."""


class WorkerCrashedError(TaskError):
    """The worker process running the task died: the exit code or signal says how."""


class ResultError(TaskError):
    """A task result that cannot be stored: not JSON-serialisable, or over the size limit."""


class TriggerError(OrchestratorError):
    """A trigger that cannot be built, or that failed while it waited."""


class TriggerLoadError(TriggerError):
    """A trigger cannot be rebuilt: unknown classpath, not a `Trigger`, or bad arguments."""


class TriggerTimeoutError(TriggerError):
    """A deferral waited longer than its timeout without an event."""


class PolicyError(OrchestratorError):
    """A URL or path that came from untrusted input is not allowed by the input policy.

    URLs and paths written in DAG code are trusted; ones taken from a run's `conf`, a webhook
    payload or an event must pass the policy (see `orchestrator.policy`).
    """


class RunError(OrchestratorError):
    """A run request that cannot be honoured: bad `conf`, an unknown run id, a paused DAG."""


class DagPausedError(RunError):
    """The DAG is paused: no new run of it starts until it is unpaused."""

    def __init__(self, message: str, *, dag_id: str) -> None:
        super().__init__(message)
        self.dag_id = dag_id


class RunNotFoundError(RunError):
    """No run has this id (in this state directory)."""

    def __init__(self, message: str, *, run_id: str) -> None:
        super().__init__(message)
        self.run_id = run_id


class RunLimitError(RunError):
    """A run refused to protect the daemon: too many queued runs, or triggers too fast.

    `retry_after` is how many seconds the caller should wait before trying again.
    """

    def __init__(self, message: str, *, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class RunStuckError(RunError):
    """`orchestrator run` cannot finish its run: tasks that depend on their past wait on a
    previous run that nothing in the process can change. The message says how to go on."""


class ApiError(OrchestratorError):
    """An HTTP request the API refuses; `status` is the HTTP status, `code` a stable word.

    The message is safe to send back: it never holds a secret or a token.
    """

    status = 400
    code = "bad_request"

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None) -> None:
        super().__init__(message)
        if status is not None:
            self.status = status
        if code is not None:
            self.code = code


class AuthError(ApiError):
    """No bearer token, a wrong, expired or revoked one (401), or too small a scope (403)."""

    status = 401
    code = "unauthorized"


class SignatureError(ApiError):
    """A webhook delivery that is unsigned, signed with another secret, tampered or stale."""

    status = 401
    code = "bad_signature"


class PayloadError(ApiError):
    """A request body that is too large (413), not JSON, too deeply nested, or of the wrong type."""

    status = 400
    code = "bad_payload"


class StoreError(OrchestratorError):
    """The durable state cannot be read or written."""


class StoreCorruptedError(StoreError):
    """The database file is damaged; the message says how to recover."""


class DamagedRowError(StoreError):
    """A sound file holds a row with a value that cannot be read; the message names it."""


class StateDirError(StoreError):
    """The state directory cannot be created or is not writable."""


class DuplicateRunError(StoreError):
    """A run with this DAG and dedup key already exists: the event was already handled.

    `existing_run_id` names that run, so a caller (a webhook, a run trigger) can answer with it
    instead of starting a second run for one event.
    """

    def __init__(self, message: str, *, dag_id: str, dedup_key: str, existing_run_id: str) -> None:
        super().__init__(message)
        self.dag_id = dag_id
        self.dedup_key = dedup_key
        self.existing_run_id = existing_run_id


class StateConflictError(StoreError):
    """A state change found its run or task instance in another state than it expected.

    Someone else moved it first (a user cancelled it, another try finished it), so this
    change was not applied. `found` is the state it is in, or None when the row is missing.
    """

    def __init__(self, message: str, *, expected: str, found: str | None) -> None:
        super().__init__(message)
        self.expected = expected
        self.found = found


#: An error line longer than this is cut: it is one line for a table, the log has the rest.
MAX_ERROR_CHARS = 2000


def error_line(error: BaseException) -> str:
    """`ExcType: message` on one line, short enough to show in a table of task instances."""
    message = " ".join(str(error).split())
    line = f"{type(error).__name__}: {message}" if message else type(error).__name__
    return line if len(line) <= MAX_ERROR_CHARS else line[: MAX_ERROR_CHARS - 3] + "..."
