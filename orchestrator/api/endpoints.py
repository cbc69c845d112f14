"""An endpoint is a value: method, path, who may call it, and what it takes.

Every route of the API is declared as an `Endpoint`, and both the Starlette routes and the
OpenAPI document are built from the same list, so the two cannot drift. `auth` is required:
a route cannot be added without deciding who may call it, and the auth test walks the
OpenAPI document to check that every route refuses whoever it should.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from starlette.requests import Request

    from orchestrator.api.context import ApiContext

#: Who may call an endpoint: anyone, a bearer token with at least this scope, or a sender
#: whose webhook signature verifies.
Auth = Literal["public", "read", "trigger", "admin", "signature"]

Handler = Callable[["ApiContext", "Request"], Awaitable[Any]]


@dataclass(frozen=True, kw_only=True)
class Param:
    """A query parameter, for the OpenAPI document and for checking what the caller sent."""

    name: str
    description: str
    type: Literal["string", "integer", "boolean"] = "string"
    enum: tuple[str, ...] = ()
    minimum: int | None = None  # integers: the range `query_int` accepts, said in the document
    maximum: int | None = None
    default: int | None = None

    def read_int(self, request: Request) -> int:
        """The parameter as a whole number in its range; its default when absent."""
        from orchestrator.api.inputs import query_int

        if self.minimum is None or self.maximum is None or self.default is None:
            raise TypeError(f"query parameter {self.name} has no range or default")
        return query_int(
            request, self.name, default=self.default, low=self.minimum, high=self.maximum
        )


def page_limit(what: str) -> Param:
    """The `limit` of a listing: 1 to 500 items a page, 50 by default."""
    return Param(
        name="limit",
        description=f"{what} per page (1-500, default 50)",
        type="integer",
        minimum=1,
        maximum=500,
        default=50,
    )


@dataclass(frozen=True, kw_only=True)
class Endpoint:
    """One route: `handler(api, request)` returns JSON-ready data or a Starlette `Response`."""

    method: str
    path: str  # Starlette's syntax, which is also OpenAPI's: /api/v1/runs/{run_id}
    handler: Handler
    auth: Auth
    summary: str
    tag: str
    query: tuple[Param, ...] = ()
    body: dict[str, Any] | None = None  # the JSON schema of the request body, if it takes one
    status: int = 200  # on success
    response: str = "application/json"

    @property
    def operation_id(self) -> str:
        return self.handler.__name__.lstrip("_")
