"""Poll an HTTP endpoint until it answers as expected: the HTTP trigger.

HTTP cannot push, so this is one of the few places that polls (design contract 6): at
`poll_interval`, with jitter, backing off after failed requests. A request that fails
(connection refused, timeout, 5xx) is logged and retried later. A policy violation, or a user
check that cannot be imported or misbehaves, fails the trigger: those never fix themselves.

```python
HttpTrigger(url="https://ci.example.com/api/jobs/42", json_path="job.state", json_value="done")
```
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import json
import logging
import math
import random
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
import httpx

from orchestrator.errors import TriggerError, TriggerLoadError
from orchestrator.policy import policy_checked_client
from triggers.base import JSON, Trigger, TriggerEvent, current_runtime

logger = logging.getLogger(__name__)

METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
TEXT_LIMIT = 64 * 1024  # characters of a non-JSON body kept in the event
_CHECK_PATH = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")
_INDEX = re.compile(r"[0-9]+")
# The body is handed over decoded, so headers that describe the wire encoding must go.
_WIRE_HEADERS = frozenset({"content-encoding", "content-length", "transfer-encoding"})

Check = Callable[[httpx.Response], Any]


class _RequestFailed(Exception):
    """A request that may succeed later: no connection, a timeout, a 5xx."""


@dataclass(frozen=True, kw_only=True)
class HttpTrigger(Trigger):
    """Fire when `url` answers with an expected status and, if asked, an expected body.

    The response passes when its status is in `expect_status`, then (if set) `json_path` holds
    `json_value` (or, without `json_value`, anything truthy), then (if set) the user `check`
    ("package.module:function", called with the `httpx.Response`, its body already read)
    returns True or a dict, which becomes the event's payload. Otherwise the payload is
    `{"url", "status", "json", "text"}`. The trigger keeps polling after an event and fires
    again only when a passing response differs from the last one it fired for.

    Fields are stored in the database as plain JSON: do not put secrets in `headers` or
    `body`. `trusted=False` (a URL taken from run conf or a payload) checks
    every request, each redirect hop included, with the runtime's input policy.
    `json_value=None` cannot ask for a JSON null: it means "present and truthy".
    """

    url: str
    method: str = "GET"
    headers: dict[str, str] | None = field(default=None, repr=False)
    body: str | None = None
    expect_status: tuple[int, ...] = (200,)
    json_path: str | None = None
    json_value: JSON = None
    check: str | None = None
    poll_interval: float = 5.0
    max_poll_interval: float = 300.0
    backoff: float = 2.0  # the interval is multiplied by this after each failed request
    jitter: float = 0.1  # up to this fraction of the interval is added, so pollers spread out
    request_timeout: float = 10.0  # for the whole request, body included
    max_body_bytes: int = 1024 * 1024
    follow_redirects: bool = True
    trusted: bool = True

    def __post_init__(self) -> None:
        _check_url(self.url)
        _check_request(self.method, self.headers, self.body)
        object.__setattr__(self, "expect_status", _statuses(self.expect_status))
        _check_json_condition(self.json_path, self.json_value)
        if self.check is not None and not (
            isinstance(self.check, str) and _CHECK_PATH.fullmatch(self.check)
        ):
            raise ValueError(f"check must look like 'package.module:function', not {self.check!r}")
        _check_timing(self)
        _check_flags(self)

    async def run(self) -> AsyncIterator[TriggerEvent]:
        check = await self._load_check()
        clock = current_runtime().clock
        client = self._client()
        try:
            fired: str | None = None
            interval = self.poll_interval
            while True:
                event, failed = await self._attempt(client, check)
                if event is not None and event.dedup_key != fired:
                    fired = event.dedup_key
                    yield event
                interval = self._next_interval(interval, failed)
                await clock.sleep_until(clock.now() + self._jittered(interval))
        finally:
            with anyio.CancelScope(shield=True):  # a cancelled run still closes its connections
                await client.aclose()

    async def poll(self) -> TriggerEvent | None:
        check = await self._load_check()
        async with self._client() as client:
            event, _ = await self._attempt(client, check)
        return event

    def _next_interval(self, interval: float, failed: bool) -> float:
        if not failed:
            return self.poll_interval
        return min(interval * self.backoff, self.max_poll_interval)

    def _jittered(self, interval: float) -> float:
        # Only ever later: an interval is a promise not to ask the server more often.
        return interval * (1 + self.jitter * random.random())

    def _client(self) -> httpx.AsyncClient:
        if self.trusted:
            return httpx.AsyncClient(timeout=self.request_timeout)
        return policy_checked_client(current_runtime().policy, timeout=self.request_timeout)

    async def _load_check(self) -> Check | None:
        if self.check is None:
            return None
        module_name, _, attributes = self.check.partition(":")
        try:
            # Importing runs the module's code and reads files: not on the event loop.
            value: Any = await anyio.to_thread.run_sync(importlib.import_module, module_name)
        except Exception as error:
            raise TriggerLoadError(f"cannot import the check {self.check!r}: {error!r}") from None
        for name in attributes.split("."):
            value = getattr(value, name, None)
        if not callable(value):
            raise TriggerLoadError(
                f"the check {self.check!r} is not a function in {module_name} (found {value!r})"
            )
        return value  # type: ignore[no-any-return]

    # -- one attempt: request, read, evaluate --------------------------------------------------

    async def _attempt(
        self, client: httpx.AsyncClient, check: Check | None
    ) -> tuple[TriggerEvent | None, bool]:
        """`(event or None, whether the request failed and the next poll should back off)`."""
        try:
            response = await self._fetch(client)
        except _RequestFailed as failure:
            logger.warning("%s; polling again later, with backoff", failure)
            return None, True
        if response is None:
            return None, False
        return await self._evaluate(response, check), False

    async def _fetch(self, client: httpx.AsyncClient) -> httpx.Response | None:
        """The response, body read, if its status is expected; None if not; raise if failed."""
        try:
            # A deadline for the whole exchange: httpx's own timeout is per network operation,
            # so a server dribbling one byte a second would otherwise hold the trigger forever.
            with anyio.fail_after(self.request_timeout):
                return await self._send(client)
        except (httpx.HTTPError, TimeoutError) as error:
            raise _RequestFailed(f"{self.method} {self.url} failed: {error!r}") from error

    async def _send(self, client: httpx.AsyncClient) -> httpx.Response | None:
        request = client.build_request(
            self.method, self.url, headers=self.headers, content=self.body
        )
        response = await client.send(request, stream=True, follow_redirects=self.follow_redirects)
        try:
            if response.status_code not in self.expect_status:
                self._note_unexpected(response)
                return None
            body = await read_capped(response, self.max_body_bytes)
        finally:
            await response.aclose()
        if body is None:
            logger.warning(
                "%s %s answered a body over max_body_bytes=%d; treating it as not ready",
                *(self.method, self.url, self.max_body_bytes),
            )
            return None
        return _loaded(response, body)

    def _note_unexpected(self, response: httpx.Response) -> None:
        status = response.status_code
        if status >= 500:
            raise _RequestFailed(f"{self.method} {self.url} answered {status}")
        logger.debug("%s answered %d, waiting for %s", self.url, status, self.expect_status)

    async def _evaluate(self, response: httpx.Response, check: Check | None) -> TriggerEvent | None:
        is_json, document = parse_json(response.content)
        if self.json_path is not None and not self._json_matches(is_json, document):
            return None
        payload: dict[str, JSON] = {
            "url": self.url,
            "status": response.status_code,
            "json": document if is_json else None,
            "text": None if is_json else response.text[:TEXT_LIMIT],
        }
        if check is not None:
            verdict = await self._call_check(check, response)
            if verdict is False:
                return None
            payload = verdict if isinstance(verdict, dict) else payload
        digest = hashlib.sha256(response.content).hexdigest()[:16]
        return TriggerEvent(
            payload=payload, dedup_key=f"{self.url}:{response.status_code}:{digest}"
        )

    def _json_matches(self, is_json: bool, document: JSON) -> bool:
        if not is_json or self.json_path is None:
            return False
        found, value = resolve_json_path(document, self.json_path)
        if not found:
            return False
        if self.json_value is None:
            return bool(value)
        # Python holds True == 1; JSON does not, and neither should a status check.
        return bool(value == self.json_value) and (
            isinstance(value, bool) == isinstance(self.json_value, bool)
        )

    async def _call_check(self, check: Check, response: httpx.Response) -> bool | dict[str, JSON]:
        try:
            if inspect.iscoroutinefunction(check):
                verdict = await check(response)
            else:  # user code may block: a worker thread keeps the loop free
                verdict = await anyio.to_thread.run_sync(check, response)
            if inspect.isawaitable(verdict):  # an object or partial whose call is async
                verdict = await verdict
        except Exception as error:
            raise TriggerError(f"the check {self.check} raised {error!r} for {self.url}") from error
        if not isinstance(verdict, bool | dict):
            raise TriggerError(
                f"the check {self.check} must return True, False or a dict payload, not {verdict!r}"
            )
        return verdict


async def read_capped(response: httpx.Response, limit: int) -> bytes | None:
    """The decoded body of a streamed response, or None once it is known to exceed `limit`."""
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _loaded(response: httpx.Response, body: bytes) -> httpx.Response:
    """A copy of a streamed `response` holding `body`, so `.content`, `.json()` work on it."""
    headers = [
        (name, value)
        for name, value in response.headers.multi_items()
        if name.lower() not in _WIRE_HEADERS
    ]
    return httpx.Response(
        response.status_code, headers=headers, content=body, request=response.request
    )


def parse_json(body: bytes) -> tuple[bool, JSON]:
    """`(True, value)` if `body` is JSON (without NaN or Infinity, which events refuse)."""
    try:
        return True, json.loads(body, parse_constant=_refuse_constant)
    except (ValueError, RecursionError):
        return False, None


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def resolve_json_path(document: JSON, path: str) -> tuple[bool, JSON]:
    """`(found, value)` at dotted `path` ("job.steps.0.state"); integer parts index lists."""
    value = document
    for part in path.split("."):
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and _INDEX.fullmatch(part) and int(part) < len(value):
            value = value[int(part)]
        else:
            return False, None
    return True, value


# -- field checks (ValueError; load_trigger turns it into TriggerLoadError) -----------------------


def _check_url(url: object) -> None:
    if not isinstance(url, str) or not url.strip():
        raise ValueError(f"url must be a non-empty http(s) URL, not {url!r}")
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as error:
        raise ValueError(f"url {url!r} is not a valid URL: {error}") from None
    if parsed.scheme not in ("http", "https"):
        raise ValueError(
            f"url {url!r} must use http or https, not {parsed.scheme or 'no scheme'!r}"
        )
    if not parsed.host:
        raise ValueError(f"url {url!r} names no host")


def _check_request(method: object, headers: object, body: object) -> None:
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)} (upper case), not {method!r}")
    if headers is not None and not (
        isinstance(headers, dict)
        and all(isinstance(key, str) and isinstance(value, str) for key, value in headers.items())
    ):
        raise ValueError(f"headers must map header names to strings, not {headers!r}")
    if body is not None and not isinstance(body, str):
        raise ValueError(f"body must be a string or None, not {type(body).__name__}")


def _statuses(value: object) -> tuple[int, ...]:
    statuses = tuple(value) if isinstance(value, list | tuple) else ()
    if not statuses or not all(
        isinstance(status, int) and not isinstance(status, bool) and 100 <= status <= 599
        for status in statuses
    ):
        raise ValueError(
            f"expect_status must be HTTP statuses (100-599) such as (200,), not {value!r}"
        )
    return statuses


def _check_json_condition(json_path: object, json_value: object) -> None:
    if json_path is None:
        if json_value is not None:
            raise ValueError("json_value needs json_path: say where in the body to look for it")
        return
    if not isinstance(json_path, str) or "" in json_path.split("."):
        raise ValueError(f"json_path must be dotted keys like 'job.state', not {json_path!r}")
    try:
        json.dumps(json_value, allow_nan=False)
    except (TypeError, ValueError):
        raise ValueError(f"json_value must be a JSON value, not {json_value!r}") from None


def _check_timing(trigger: HttpTrigger) -> None:
    for name in ("poll_interval", "max_poll_interval", "request_timeout"):
        _check_number(trigger, name, low=0.0, inclusive=False)
    _check_number(trigger, "backoff", low=1.0, inclusive=True)
    _check_number(trigger, "jitter", low=0.0, inclusive=True)
    if trigger.max_poll_interval < trigger.poll_interval:
        raise ValueError(
            f"max_poll_interval ({trigger.max_poll_interval}) must not be below"
            f" poll_interval ({trigger.poll_interval})"
        )


def _check_number(trigger: HttpTrigger, name: str, *, low: float, inclusive: bool) -> None:
    value = getattr(trigger, name)
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if number and math.isfinite(value) and (value >= low if inclusive else value > low):
        return
    bound = f"at least {low:g}" if inclusive else f"above {low:g}"
    raise ValueError(f"{name} must be a finite number {bound}, not {value!r}")


def _check_flags(trigger: HttpTrigger) -> None:
    size = trigger.max_body_bytes
    if isinstance(size, bool) or not isinstance(size, int) or size <= 0:
        raise ValueError(f"max_body_bytes must be a positive whole number, not {size!r}")
    for name in ("follow_redirects", "trusted"):
        if not isinstance(getattr(trigger, name), bool):
            raise ValueError(f"{name} must be true or false, not {getattr(trigger, name)!r}")
