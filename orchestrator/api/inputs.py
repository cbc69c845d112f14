"""What a caller sent, checked: the body (size and depth limits), query and path parameters.

Every refusal is an `ApiError` that names the parameter and what it may be.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.requests import ClientDisconnect

from orchestrator.api.limits import parse_json, read_body
from orchestrator.errors import ApiError, PayloadError

if TYPE_CHECKING:
    from starlette.requests import Request

    from orchestrator.api.context import ApiContext

#: Query parameters that would carry a token. Tokens in URLs end up in proxy and access logs,
#: in browser history and in Referer headers, so a request that has one is refused outright.
_TOKEN_PARAMETERS = frozenset({"token", "access_token", "api_key", "apikey", "auth"})
#: Characters a short text field (an idempotency key, a name) may have, in a body or a header.
MAX_TEXT = 512


def refuse_token_in_query(request: Request) -> None:
    # No query string, no parameter: most requests (every webhook delivery) skip parsing it.
    if not request.scope.get("query_string"):
        return
    if any(name.lower() in _TOKEN_PARAMETERS for name in request.query_params):
        raise ApiError(
            "a token in the URL is refused (URLs are logged and leak); send it in the "
            "`Authorization: Bearer <token>` header instead, and revoke this one "
            "(`orchestrator tokens revoke TOKEN_ID`)",
            code="token_in_query",
        )


async def body_bytes(api: ApiContext, request: Request) -> bytes:
    """The raw body, refused with 413 as soon as it passes `api_max_body`."""
    try:
        return await read_body(
            request.stream(),
            limit=api.settings.api_max_body,
            content_length=request.headers.get("content-length"),
        )
    except ClientDisconnect:
        # The client left, or its body was too slow (`api_body_timeout` closed the
        # connection): nobody reads this answer, but it must not be logged as our failure.
        raise PayloadError(
            "the connection closed before the whole body arrived",
            status=408,
            code="request_timeout",
        ) from None


async def json_object(api: ApiContext, request: Request) -> dict[str, Any]:
    """The body as a JSON object; an empty body is `{}`."""
    body = await body_bytes(api, request)
    if not body.strip():
        return {}
    value = parse_json(body, max_depth=api.settings.api_max_json_depth)
    if not isinstance(value, dict):
        raise PayloadError(
            f"the body must be a JSON object, got {_json_type(value)}", code="not_an_object"
        )
    return value


def query_int(request: Request, name: str, *, default: int, low: int, high: int) -> int:
    text = request.query_params.get(name)
    if text is None or text == "":
        return default
    try:
        value = int(text)
    except ValueError:
        value = low - 1
    if not low <= value <= high:
        raise ApiError(f"`{name}` must be a whole number from {low} to {high}, got {text!r}")
    return value


def query_choice(request: Request, name: str, choices: tuple[str, ...]) -> str | None:
    text = request.query_params.get(name)
    if text is None or text == "":
        return None
    if text not in choices:
        raise ApiError(f"`{name}` must be one of {', '.join(choices)}, got {text!r}")
    return text


def path_text(request: Request, name: str) -> str:
    value: str = request.path_params[name]
    return value


def optional_text(body: dict[str, Any], name: str) -> str | None:
    return _short_text(body.get(name), f"`{name}`")


def optional_header(request: Request, name: str) -> str | None:
    """A header that stands in for a body field (`Idempotency-Key`), bounded like one."""
    return _short_text(request.headers.get(name), f"the {name} header")


def _short_text(value: Any, what: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value or len(value) > MAX_TEXT:
        raise ApiError(f"{what} must be a non-empty string of at most {MAX_TEXT} characters")
    return value


def optional_bool(body: dict[str, Any], name: str, *, default: bool) -> bool:
    value = body.get(name, default)
    if not isinstance(value, bool):
        raise ApiError(f"`{name}` must be true or false, got {_json_type(value)}")
    return value


def object_field(body: dict[str, Any], name: str) -> dict[str, Any]:
    value = body.get(name)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise PayloadError(
            f"`{name}` must be a JSON object, got {_json_type(value)}", code="not_an_object"
        )
    return value


def _json_type(value: Any) -> str:
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean"}
    if value is None:
        return "null"
    return names.get(type(value), "a number")
