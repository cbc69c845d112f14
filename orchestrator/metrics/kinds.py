"""The kind of an event's source, a bounded label: the DAG's own source names are not."""

from __future__ import annotations

#: An event source's first word (a trigger class without "Trigger"), and its kind.
_KINDS = {
    "webhook": "webhook",
    "asset": "asset",
    "dag": "run",
    "externalrun": "run",
    "file": "file",
    "s3": "s3",
    "time": "time",
    "datetime": "time",
    "cron": "time",
    "http": "http",
}


def source_kind(source: str) -> str:
    """file, s3, webhook, asset, time, run, http or other, from a source's stored name.

    Sources are named `FileTrigger(directory=...)`, `webhook NAME`, `asset URI`, `dag ID ...`.
    """
    head = source.split(" ", 1)[0].split("(", 1)[0].lower().removesuffix("trigger")
    return _KINDS.get(head, "other")
