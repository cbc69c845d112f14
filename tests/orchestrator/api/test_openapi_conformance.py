"""The OpenAPI document matches the API: schemathesis sends generated requests to a live server.

Every operation gets a bounded number of examples, derandomized so a run is repeatable, with
an admin token (so auth passes and the checks reach the handlers). Each answer is checked
against the document: status codes it declares, `Allow` on a 405, schemas of the bodies.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anyio
import pytest
import schemathesis
from apikit import hello_dag, serving
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings

from orchestrator.config import Settings

pytestmark = pytest.mark.slow
SettingsFactory = Callable[..., Settings]
EXAMPLES = 15


# What every answer is checked for. Data the document allows must also be accepted, except in
# request bodies: a webhook definition or a token name has rules (a printable name, a secret
# source) that a JSON schema cannot say, and those answer 400 with the rule.
CHECKS = [
    schemathesis.checks.not_a_server_error,
    schemathesis.checks.status_code_conformance,
    schemathesis.checks.content_type_conformance,
    schemathesis.checks.response_headers_conformance,
    schemathesis.checks.response_schema_conformance,
    schemathesis.checks.unsupported_method,
]


def check_operation(operation: Any, url: str, headers: dict[str, str]) -> list[str]:
    """What schemathesis finds wrong with one operation, in a bounded, repeatable run."""
    failures: list[str] = []
    checks = list(CHECKS)
    if operation.method.upper() in ("GET", "DELETE"):
        checks.append(schemathesis.checks.positive_data_acceptance)

    @hypothesis_settings(
        max_examples=EXAMPLES,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy())
    def check(case: Any) -> None:
        response = case.call(base_url=url, headers=headers)
        try:
            case.validate_response(response, checks=checks)
        except BaseExceptionGroup as group:  # schemathesis groups its failed checks
            for error in group.exceptions:
                failures.append(
                    f"{case.method} {case.formatted_path} {case.query} -> "
                    f"{response.status_code} {response.text[:200]}: {error}"
                )

    check()
    return failures


async def test_the_live_api_answers_as_its_openapi_document_says(
    make_settings: SettingsFactory,
) -> None:
    settings = make_settings(dag_trigger_rate=1e6, webhook_rate=1e6)
    async with serving(settings, hello_dag()) as served:
        answer = await served.client.get("/api/v1/openapi.json", headers=served.auth("read"))
        schema = schemathesis.openapi.from_dict(answer.json())
        failures: list[str] = []
        for result in schema.get_all_operations():
            failures += await anyio.to_thread.run_sync(
                check_operation, result.ok(), served.url, served.auth("admin")
            )
    assert failures == []


async def test_a_method_a_route_does_not_take_is_a_405_that_says_which_it_does(
    make_settings: SettingsFactory,
) -> None:
    async with serving(make_settings(), hello_dag()) as served:
        answer = await served.client.patch("/api/v1/runs", headers=served.auth("read"))
    assert answer.status_code == 405, answer.text
    assert answer.headers["Allow"] == "GET, HEAD"
    assert answer.json()["error"]["code"] == "method_not_allowed"
