"""Airflow's exceptions: skip, fail without retry, timeouts. A skip is the native `Skip`."""

from __future__ import annotations

from orchestrator.authoring.tasks import Skip


class AirflowException(Exception):
    """The base of Airflow's exceptions; raised in a task, it fails the try."""


class AirflowSkipException(AirflowException, Skip):
    """Raise in a task to mark it skipped."""


class AirflowFailException(AirflowException):
    """Raise in a task to fail it without retrying."""


class AirflowSensorTimeout(AirflowException):
    """A sensor waited past its timeout."""


class AirflowTaskTimeout(AirflowException):
    """A task ran past its execution_timeout."""


class AirflowNotFoundException(AirflowException):
    """A connection or variable that does not exist."""


class DuplicateTaskIdFound(AirflowException):
    """Two tasks of one DAG share an id."""


__all__ = (
    "AirflowException",
    "AirflowFailException",
    "AirflowNotFoundException",
    "AirflowSensorTimeout",
    "AirflowSkipException",
    "AirflowTaskTimeout",
    "DuplicateTaskIdFound",
)
