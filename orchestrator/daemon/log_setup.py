"""The daemon's own log: readable text for a terminal, or one JSON object per line for journald.

```
text  2026-11-21 10:00:00.123 INFO  orchestrator.engine: run started  run_id=r1 dag_id=train
json  {"ts": "2026-11-21T09:00:00.123Z", "level": "INFO", "logger": "orchestrator.engine",
       "msg": "run started", "run_id": "r1", "dag_id": "train"}
```

Text times are local (what the operator's clock says); JSON times are UTC, for machines.
Fields passed with `extra=` are kept (as JSON when they are JSON-safe, as their `repr`
otherwise). The record's `args` never are: they only feed the message, as the caller wrote it.

`configure_logging` puts one handler on the root logger and may be called again (after a
config reload, in tests): it replaces its own handler and leaves every other one alone.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from datetime import UTC, datetime
from typing import Any, TextIO

from orchestrator.errors import ConfigError
from orchestrator.execution import log_capture

LOG_FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)-5s %(name)s: %(message)s"

# Attributes every LogRecord has; anything else on a record came from `extra=`.
_RECORD_ATTRIBUTES = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",  # Python 3.12+
}


class TextFormatter(logging.Formatter):
    """`2026-11-21 10:00:00.123 INFO  orchestrator.engine: message  key=value`, local time."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        seconds = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(record.created))
        return f"{seconds}.{int(record.msecs):03d}"

    def formatMessage(self, record: logging.LogRecord) -> str:
        # Extras go on the first line: the traceback, if any, is appended after this.
        fields = " ".join(f"{key}={_text_value(value)}" for key, value in extra_fields(record))
        line = super().formatMessage(record)
        return f"{line}  {fields}" if fields else line


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ts (UTC, ms), level, logger, msg, extras, exc, stack."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": _utc_timestamp(record.created),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in extra_fields(record):
            entry.setdefault(key, json_safe(value))  # an extra never hides a standard key
        entry.update(self._problem_fields(record))
        return json.dumps(entry)  # ASCII-escaped: a stray surrogate cannot break the stream

    def _problem_fields(self, record: logging.LogRecord) -> dict[str, str]:
        fields: dict[str, str] = {}
        if record.exc_info:
            fields["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            fields["exc"] = record.exc_text
        if record.stack_info:
            fields["stack"] = self.formatStack(record.stack_info)
        return fields


class _DaemonHandler(logging.StreamHandler[TextIO]):
    """The handler `configure_logging` owns: its class is how a second call finds it."""


def configure_logging(
    format: str, *, level: str = "INFO", stream: TextIO | None = None
) -> logging.Handler:
    """Send every log record at `level` or above to `stream` in `format` ("text" or "json").

    `stream` defaults to the process's real stderr, looked up now: behind `log_capture`'s
    router if it is installed, so a task's records reach its own log only once.
    Returns the handler put on the root logger.
    """
    formatter = _formatter_for(format)
    numeric_level = _level_number(level)
    handler = _DaemonHandler(stream if stream is not None else _real_stderr())
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _DaemonHandler)]:
        root.removeHandler(old)
        old.close()  # forgets the handler; a StreamHandler never closes its stream
    root.addHandler(handler)
    root.setLevel(numeric_level)
    # httpx logs every request's URL at INFO; an alert channel's URL is its password.
    logging.getLogger("httpx").setLevel(max(numeric_level, logging.WARNING))
    return handler


def extra_fields(record: logging.LogRecord) -> list[tuple[str, Any]]:
    """The fields a caller added with `extra=`, in the order they were given."""
    return [(key, value) for key, value in vars(record).items() if key not in _RECORD_ATTRIBUTES]


def json_safe(value: Any) -> Any:
    """`value` itself if it can be written as JSON, else its `repr`."""
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError, RecursionError):
        return repr(value)
    return value


def _formatter_for(format: str) -> logging.Formatter:
    if format == "text":
        return TextFormatter()
    if format == "json":
        return JsonFormatter()
    raise ConfigError(f"the log format must be one of {', '.join(LOG_FORMATS)}, got {format!r}")


def _level_number(level: str) -> int:
    levels = logging.getLevelNamesMapping()
    if not isinstance(level, str) or level.upper() not in levels:
        known = ", ".join(name for name in levels if name not in ("WARN", "FATAL"))
        raise ConfigError(f"the log level must be one of {known}, got {level!r}")
    return levels[level.upper()]


def _utc_timestamp(created: float) -> str:
    """ISO-8601 in UTC with milliseconds: `2026-11-21T09:00:00.123Z`."""
    moment = datetime.fromtimestamp(created, tz=UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _text_value(value: Any) -> str:
    """A plain word stays as it is; anything else is shown as JSON (or its repr)."""
    if isinstance(value, str) and value and not any(c.isspace() or c in '="' for c in value):
        return value
    return json.dumps(json_safe(value))


def _real_stderr() -> TextIO:
    return log_capture.real_stream("stderr") or sys.__stderr__ or sys.stderr
