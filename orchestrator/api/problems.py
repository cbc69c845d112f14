"""Errors as JSON, in one stable shape, with the HTTP status each kind of error deserves.

```json
{"error": {"status": 409, "code": "dag_paused", "message": "DAG 'retrain' is paused, ..."}}
```

`code` is a stable word for scripts; `message` is a sentence for people, and never holds a
secret or a token. An error we did not expect is logged with its traceback and answered with
a bare 500, so nothing internal leaks.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from orchestrator.api.answers import JsonAnswer
from orchestrator.errors import (
    ApiError,
    DagNotFoundError,
    DagPausedError,
    DuplicateRunError,
    OrchestratorError,
    PolicyError,
    RunError,
    RunLimitError,
    RunNotFoundError,
    StoreError,
)

logger = logging.getLogger("orchestrator.api")

_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "body_too_large",
    429: "rate_limited",
}

# Most specific first: the first class the error is an instance of decides.
_STATUS: tuple[tuple[type[OrchestratorError], int, str], ...] = (
    (DagNotFoundError, 404, "dag_not_found"),
    (RunNotFoundError, 404, "run_not_found"),
    (DagPausedError, 409, "dag_paused"),
    (DuplicateRunError, 409, "duplicate_run"),
    (RunLimitError, 429, "rate_limited"),
    (PolicyError, 400, "blocked_input"),
    (RunError, 400, "bad_request"),
    (StoreError, 503, "store_unavailable"),
)


def problem(status: int, code: str, message: str, **extra: Any) -> JSONResponse:
    """The error response: `{"error": {"status", "code", "message", ...extra}}`."""
    body = {"error": {"status": status, "code": code, "message": message, **extra}}
    return JsonAnswer(body, status_code=status, headers=_headers(extra))


def status_of(error: OrchestratorError) -> tuple[int, str]:
    """The HTTP status and stable code an error of ours stands for (the web UI's too)."""
    if isinstance(error, ApiError):
        return error.status, error.code
    for kind, status, code in _STATUS:
        if isinstance(error, kind):
            return status, code
    return 400, "bad_request"


def code_of(error: BaseException) -> str:
    """The stable word the answer to `error` carries (`internal_error` for one unexpected)."""
    if isinstance(error, OrchestratorError):
        return status_of(error)[1]
    return "internal_error"


def response_for(error: OrchestratorError) -> JSONResponse:
    """Our own errors: the status and code their class stands for, their message as it is."""
    status, code = status_of(error)
    return problem(status, code, str(error), **_details(error))


async def orchestrator_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, OrchestratorError)  # Starlette registered it for this class
    if isinstance(error, StoreError):
        logger.error("%s %s: %s", request.method, request.url.path, error)
    return response_for(error)


async def http_error(request: Request, error: Exception) -> Response:
    """Starlette's own refusals (no such route, wrong method) in our shape."""
    assert isinstance(error, HTTPException)
    code = _HTTP_CODES.get(error.status_code, "http_error")
    message = "there is no such route" if error.status_code == 404 else str(error.detail)
    answer = problem(error.status_code, code, message)
    answer.headers.update(error.headers or {})  # a 405's Allow, which says what would work
    if "Allow" in answer.headers:  # Starlette joins a set: the same answer every time, please
        methods = sorted(method.strip() for method in answer.headers["Allow"].split(","))
        answer.headers["Allow"] = ", ".join(methods)
    return answer


async def unexpected_error(request: Request, error: Exception) -> Response:
    logger.exception("%s %s failed", request.method, request.url.path, exc_info=error)
    return problem(500, "internal_error", "the daemon failed to answer; its log says why")


def _details(error: OrchestratorError) -> dict[str, Any]:
    if isinstance(error, RunLimitError):
        return {"retry_after": round(error.retry_after, 3)}
    if isinstance(error, DuplicateRunError):
        return {"run_id": error.existing_run_id}
    return {}


def _headers(extra: dict[str, Any]) -> dict[str, str] | None:
    retry_after = extra.get("retry_after")
    if retry_after is None:
        return None
    return {"Retry-After": str(max(1, math.ceil(retry_after)))}
