"""How the pages write times, durations and sizes: Jinja filters, each a pure function."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote


def utc(at: float | None) -> str:
    """`2026-01-31 12:00:05` (UTC), or an em dash for no moment."""
    if at is None:
        return "—"
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M:%S")


def iso(at: float | None) -> str:
    """ISO 8601 in UTC, for `<time datetime=...>`; empty for no moment."""
    return "" if at is None else datetime.fromtimestamp(at, UTC).isoformat()


def duration(seconds: float | None) -> str:
    """`850 ms`, `12.3 s`, `4 m 05 s`, `3 h 02 m`, `2 d 04 h`; an em dash for none."""
    if seconds is None:
        return "—"
    if seconds < 0:
        seconds = 0.0
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    whole = int(seconds)
    if whole < 3600:
        return f"{whole // 60} m {whole % 60:02d} s"
    if whole < 86400:
        return f"{whole // 3600} h {whole % 3600 // 60:02d} m"
    return f"{whole // 86400} d {whole % 86400 // 3600:02d} h"


def ago(at: float | None, now: float) -> str:
    """`5 s ago`, `in 3 m 00 s`: a moment relative to `now`."""
    if at is None:
        return "—"
    if at > now:
        return f"in {duration(at - now)}"
    return f"{duration(now - at)} ago"


def size(count: int | float | None) -> str:
    """Bytes as `512 B`, `1.5 KiB`, `20.0 MiB`, `3.1 GiB`."""
    if count is None:
        return "—"
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")  # pragma: no cover


def pretty_json(value: Any, limit: int = 4000) -> str:
    """Indented JSON for people, cut at `limit` characters with a note."""
    text = json.dumps(value, indent=2, sort_keys=True, default=str, ensure_ascii=False)
    if len(text) > limit:
        return text[:limit] + f"\n… ({len(text) - limit} more characters)"
    return text


def preview(text: str | None, limit: int = 200) -> str:
    """The first `limit` characters of a text, on one line."""
    if not text:
        return ""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def path_part(value: object) -> str:
    """A value as one URL path segment: every reserved character escaped, `/` included."""
    return quote(str(value), safe="")


FILTERS: dict[str, Callable[..., str]] = {
    "utc": utc,
    "iso": iso,
    "duration": duration,
    "ago": ago,
    "size": size,
    "pretty_json": pretty_json,
    "preview": preview,
    "path": path_part,
}
