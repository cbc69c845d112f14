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
├── RunError                a run request that cannot be honoured (bad conf, unknown run)
└── StoreError              the durable state cannot be used
    ├── StoreCorruptedError the database file fails its integrity check
    └── StateDirError       the state directory cannot be created or written
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


class RunError(OrchestratorError):
    """A run request that cannot be honoured: bad `conf`, an unknown run id, a paused DAG."""


class StoreError(OrchestratorError):
    """The durable state cannot be read or written."""


class StoreCorruptedError(StoreError):
    """The database file is damaged; the message says how to recover."""


class StateDirError(StoreError):
    """The state directory cannot be created or is not writable."""
