"""Request limits: body size, JSON shape and rate, checked before a request costs us anything.

The API faces whatever can reach its port, so each limit is enforced where it is cheapest:

- `read_body` refuses an oversized body before reading it when `Content-Length` says so, and
  stops reading a chunked body (no `Content-Length`) as soon as it passes the limit, so a
  client cannot make the daemon buffer more than `limit` bytes.
- `parse_json` checks nesting depth *before* parsing, without recursion: the standard `json`
  parser recurses once per level, and a body of 100 000 `[` would otherwise end in a
  `RecursionError` deep in the C scanner. `NaN` and `Infinity` are refused: they are not JSON,
  and a value that other tools cannot read back must not reach a run's `conf`.
- `RateLimiter` is a token bucket per key (a webhook, a DAG), on an injected clock so tests move
  time instead of sleeping.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import AsyncIterable
from dataclasses import dataclass
from itertools import accumulate, repeat
from typing import Any

from orchestrator.clock import Clock
from orchestrator.errors import PayloadError

_CONTENT_LENGTH = re.compile(r"[0-9]{1,20}")
# Everything but brackets: JSON strings (brackets inside them do not nest), numbers, literals,
# commas, colons and whitespace. What is left is the nesting structure. A string's closing quote
# is optional so an unterminated one runs to the end in one match: were it required, a body of
# escaped quotes (`"\"\"\"...`) would retry from every quote, in quadratic time.
_NOT_STRUCTURE = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"?|[^\[\]{}"]+', re.DOTALL)
_DEPTH_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}
# A request this early is let through: the clock's float rounding (about 0.2 µs at today's
# epoch seconds) must not make a caller who waited exactly its Retry-After wait once more.
_EARLY_SECONDS = 1e-6


# -- body size ------------------------------------------------------------------------------------


async def read_body(
    chunks: AsyncIterable[bytes], *, limit: int, content_length: str | None
) -> bytes:
    """The whole request body, refused (413) as soon as it is known to exceed `limit` bytes.

    `chunks` is Starlette's `request.stream()`. A `Content-Length` larger than the body it
    announces is the HTTP server's business (it reports a truncated request); so is one smaller
    than the body (the extra bytes are the next request, or an error). Either way at most
    `limit` bytes are ever held here, whatever the header said.
    """
    declared = _declared_length(content_length)
    if declared is not None and declared > limit:
        raise _too_large(limit)
    received = bytearray()
    async for chunk in chunks:
        received += chunk
        if len(received) > limit:
            raise _too_large(limit)
    return bytes(received)


def _declared_length(header: str | None) -> int | None:
    """The `Content-Length` as a number, or None when the body is sent without one."""
    if header is None:
        return None
    if not _CONTENT_LENGTH.fullmatch(header.strip()):
        raise PayloadError(
            "the Content-Length header must be a whole number of bytes",
            status=400,
            code="bad_content_length",
        )
    return int(header)


def _too_large(limit: int) -> PayloadError:
    return PayloadError(
        f"the request body is larger than {limit} bytes, the most this server accepts;"
        " send a smaller body",
        status=413,
        code="body_too_large",
    )


# -- JSON -----------------------------------------------------------------------------------------


def parse_json(body: bytes, *, max_depth: int) -> Any:
    """The JSON document in `body`, refused (400) when it is not UTF-8 JSON or nests too deep."""
    text = _utf8_text(body)
    if not text.strip():
        raise _invalid_json("the body is empty; send a JSON document")
    _check_depth(text, max_depth)
    try:
        return json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float)
    except json.JSONDecodeError as error:
        raise _invalid_json(
            f"the body is not valid JSON: {error.msg} at line {error.lineno}, column {error.colno}"
        ) from None
    except RecursionError:  # only with a max_depth above what the parser's stack allows
        raise _too_deep(max_depth) from None
    except ValueError:  # an integer beyond Python's digit limit, the one other refusal
        raise _invalid_json("the body is not usable JSON: a number has too many digits") from None


def _utf8_text(body: bytes) -> str:
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as error:
        line = body.count(b"\n", 0, error.start) + 1
        column = error.start - body.rfind(b"\n", 0, error.start)
        raise _invalid_json(
            f"the body is not valid UTF-8 (line {line}, column {column}); send JSON as UTF-8"
        ) from None


def _check_depth(text: str, max_depth: int) -> None:
    """Refuse `text` when its arrays and objects nest deeper than `max_depth`, in linear time."""
    if text.count("[") + text.count("{") <= max_depth:
        return  # too few brackets to nest that deep: the common case costs two scans in C
    structure = _NOT_STRUCTURE.sub("", text)
    steps = map(_DEPTH_STEP.get, structure, repeat(0))
    if max(accumulate(steps), default=0) > max_depth:
        raise _too_deep(max_depth)


def _refuse_constant(name: str) -> Any:
    raise _invalid_json(f"the body holds {name}, which is not JSON; send a number or null")


def _finite_float(text: str) -> float:
    # `1e999` is valid JSON that Python reads as infinity, which no store or date can hold.
    value = float(text)
    if not math.isfinite(value):
        raise _invalid_json(f"the body holds the number {text[:40]}, too large for a float")
    return value


def _invalid_json(message: str) -> PayloadError:
    return PayloadError(message, status=400, code="invalid_json")


def _too_deep(max_depth: int) -> PayloadError:
    return PayloadError(
        f"the JSON body nests arrays and objects more than {max_depth} levels deep,"
        " the most this server accepts; send a flatter document",
        status=400,
        code="json_too_deep",
    )


# -- rate -----------------------------------------------------------------------------------------


@dataclass
class _Bucket:
    """The tokens of one key at `updated`; `rate` is the one it was last asked with."""

    tokens: float
    updated: float
    rate: float

    def tokens_at(self, now: float) -> float:
        # max(): the wall clock can step back; that must not take tokens away.
        elapsed = max(0.0, now - self.updated)
        return min(_burst(self.rate), self.tokens + elapsed * self.rate)


class RateLimiter:
    """Token buckets keyed by string: `rate` requests per second, with a burst of as many.

    A bucket starts full, so an idle key may send `max(1, rate)` requests at once. Buckets that
    have refilled carry no information (a new one would be the same), so when more than
    `max_keys` are held the full ones are dropped: memory is bounded by the keys active
    recently, not by every key ever seen.
    """

    def __init__(self, clock: Clock, *, max_keys: int = 10_000) -> None:
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}
        self._max_keys = max_keys
        self._prune_at = max_keys

    def acquire(self, key: str, rate: float) -> float | None:
        """Take one token of `key`'s bucket: None if allowed, else seconds until one is there.

        The wait suits a `Retry-After` header once rounded up to whole seconds.
        """
        if not 0 < rate < math.inf:
            raise ValueError(f"a rate must be a number of requests per second above 0, got {rate}")
        now = self._clock.now()
        bucket = self._bucket(key, rate, now)
        bucket.tokens, bucket.updated, bucket.rate = bucket.tokens_at(now), now, rate
        if bucket.tokens + _EARLY_SECONDS * rate >= 1:
            bucket.tokens = max(0.0, bucket.tokens - 1)
            return None
        return (1 - bucket.tokens) / rate

    def waiting_time(self, key: str, rate: float) -> float | None:
        """What `acquire` would answer now, without taking a token: None if one is there."""
        bucket = self._buckets.get(key)
        if bucket is None:
            return None
        tokens = bucket.tokens_at(self._clock.now())
        return None if tokens + _EARLY_SECONDS * rate >= 1 else (1 - tokens) / rate

    def __len__(self) -> int:
        """How many buckets are held (idle ones are dropped as the table grows)."""
        return len(self._buckets)

    def _bucket(self, key: str, rate: float, now: float) -> _Bucket:
        bucket = self._buckets.get(key)
        if bucket is None:
            # Pruned before the new bucket is added: being full, it would go at once.
            self._prune_if_large(now)
            bucket = self._buckets[key] = _Bucket(tokens=_burst(rate), updated=now, rate=rate)
        return bucket

    def _prune_if_large(self, now: float) -> None:
        if len(self._buckets) < self._prune_at:
            return
        self._buckets = {
            key: bucket
            for key, bucket in self._buckets.items()
            if bucket.tokens_at(now) < _burst(bucket.rate)
        }
        # When most keys are busy, wait for the table to double before scanning again, so
        # the cost of pruning stays constant per request.
        self._prune_at = max(self._max_keys, 2 * len(self._buckets))


def _burst(rate: float) -> float:
    return max(1.0, rate)
