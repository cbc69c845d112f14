"""The checks an `S3Trigger`'s arguments pass when it is made: at the DAG's line, not at run time.

A trigger is rebuilt from stored JSON after a restart, so each check also guards what comes back
from the store: a value no check would pass never reaches a poll loop.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from triggers.s3 import S3Trigger

WILDCARD_CHARACTERS = "*?["


def check_arguments(trigger: S3Trigger) -> None:
    """Raise `ValueError` naming the first argument that is wrong, and how to fix it."""
    _check_location(trigger)
    _check_numbers(trigger)
    _check_connection(trigger)


def _check_location(trigger: S3Trigger) -> None:
    _check_optional_text(trigger, "bucket", "key", "prefix", "wildcard", "marker", required=1)
    if "/" in trigger.bucket:
        raise ValueError(f"bucket {trigger.bucket!r} must be a bucket name, without '/'")
    given = [name for name in ("key", "prefix", "wildcard") if getattr(trigger, name) is not None]
    if len(given) != 1:
        raise ValueError(
            f"give exactly one of key, prefix or wildcard (got {', '.join(given) or 'none'})"
        )
    if trigger.key == "":
        raise ValueError("key must name an object; use prefix='' to watch the whole bucket")
    if trigger.wildcard is not None and not set(trigger.wildcard) & set(WILDCARD_CHARACTERS):
        raise ValueError(
            f"wildcard {trigger.wildcard!r} has no *, ? or [; use key= or prefix= instead"
        )
    _check_marker(trigger)


def _check_marker(trigger: S3Trigger) -> None:
    if trigger.marker is None:
        return
    if trigger.prefix is None:
        raise ValueError("marker needs prefix: it waits for the object prefix + marker")
    if trigger.marker == "":
        raise ValueError("marker must name an object under the prefix, such as '_SUCCESS'")
    if trigger.min_size:
        raise ValueError("min_size does not apply with marker: a marker object is usually empty")


def _check_optional_text(trigger: S3Trigger, *names: str, required: int) -> None:
    """The first `required` names must be non-empty strings; the rest strings or None."""
    for index, name in enumerate(names):
        value = getattr(trigger, name)
        if index < required and not (isinstance(value, str) and value):
            raise ValueError(f"{name} must be a non-empty string, not {value!r}")
        if value is not None and not isinstance(value, str):
            raise ValueError(f"{name} must be a string or None, not {value!r}")


def _check_numbers(trigger: S3Trigger) -> None:
    _check_number(trigger, "min_size", int, minimum=0)
    _check_number(trigger, "max_attempts", int, minimum=1)
    _check_number(trigger, "full_scan_every", int, minimum=1)
    _check_number(trigger, "poll_interval", float, minimum=0, strict=True)
    _check_number(trigger, "max_poll_interval", float, minimum=0, strict=True)
    if trigger.max_poll_interval < trigger.poll_interval:
        raise ValueError(
            f"max_poll_interval ({trigger.max_poll_interval!r}) must be at least"
            f" poll_interval ({trigger.poll_interval!r})"
        )
    _check_number(trigger, "jitter", float, minimum=0)
    if trigger.jitter >= 1:
        raise ValueError(f"jitter is a fraction of the interval below 1, not {trigger.jitter!r}")


def _check_number(
    trigger: S3Trigger, name: str, kind: type, *, minimum: float, strict: bool = False
) -> None:
    value: Any = getattr(trigger, name)
    kinds = (int, float) if kind is float else (int,)
    if isinstance(value, bool) or not isinstance(value, kinds) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite {kind.__name__}, not {value!r}")
    if value < minimum or (strict and value == minimum):
        bound = "above" if strict else "at least"
        raise ValueError(f"{name} must be {bound} {minimum!r}, not {value!r}")


def _check_connection(trigger: S3Trigger) -> None:
    _check_optional_text(trigger, "endpoint_url", "region_name", "profile", required=0)
    url = trigger.endpoint_url
    if url is not None and not url.startswith(("http://", "https://")):
        raise ValueError(f"endpoint_url must start with http:// or https://, not {url!r}")
    for name in ("region_name", "profile"):
        if getattr(trigger, name) == "":
            raise ValueError(f"{name} must be None (the AWS default) or a name, not ''")
