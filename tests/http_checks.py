"""User checks for `HttpTrigger(check="http_checks:...")` in the tests, imported by name."""

from __future__ import annotations

from typing import Any

import httpx

NOT_A_FUNCTION = 42


def state_is_done(response: httpx.Response) -> bool:
    """Pass when the JSON body says the job is done."""
    return bool(response.json().get("state") == "done")


def done_payload(response: httpx.Response) -> dict[str, Any] | bool:
    """Pass with a payload of our own when the job is done."""
    state = response.json().get("state")
    return {"state": state, "checked_by": "done_payload"} if state == "done" else False


async def async_state_is_done(response: httpx.Response) -> bool:
    """The same check, written as a coroutine function."""
    return bool(response.json().get("state") == "done")


def forgets_to_return(response: httpx.Response) -> None:
    """A check with a bug: it returns None."""


def raises(response: httpx.Response) -> bool:
    """A check with a bug: it raises."""
    raise KeyError("state")
