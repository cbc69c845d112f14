"""Every number the API, the control socket and the CLI take is bounded before anything is stored.

A token whose expiry cannot be shown as a date (`1e999` is infinity; 3e16 s is past year
9999) used to be stored and then break every token listing for good.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from apikit import hello_dag, serving

from orchestrator.api.registry import ApiRegistry
from orchestrator.api.registryops import LocalRegistryOps
from orchestrator.api.tokens import MAX_EXPIRES_IN
from orchestrator.cli.tokens import parse_expires
from orchestrator.clock import FakeClock
from orchestrator.config import Settings
from orchestrator.errors import RunError

SettingsFactory = Callable[..., Settings]


@pytest.mark.parametrize(
    "expires_in",
    ["1e999", "3e16", "1" + "0" * 400, str(MAX_EXPIRES_IN + 1), "0", "-5", "true", '"10"'],
)
async def test_a_token_with_an_unusable_expiry_is_refused_and_listings_keep_working(
    make_settings: SettingsFactory, expires_in: str
) -> None:
    async with serving(make_settings(), hello_dag()) as served:
        answer = await served.client.post(
            "/api/v1/tokens",
            content=f'{{"scope": "read", "expires_in": {expires_in}}}',
            headers={**served.auth("admin"), "Content-Type": "application/json"},
        )
        assert answer.status_code == 400, answer.text
        message = answer.json()["error"]["message"]
        assert "expires_in" in message or "too large for a float" in message
        listing = await served.client.get("/api/v1/tokens", headers=served.auth("admin"))
        assert listing.status_code == 200, listing.text
        assert len(listing.json()["tokens"]) == 3  # the test's own three, nothing more
        assert len(served.api.registry.tokens) == 3


async def test_the_longest_expiry_is_accepted_and_listed(make_settings: SettingsFactory) -> None:
    async with serving(make_settings(), hello_dag()) as served:
        answer = await served.client.post(
            "/api/v1/tokens",
            json={"scope": "read", "expires_in": MAX_EXPIRES_IN},
            headers=served.auth("admin"),
        )
        assert answer.status_code == 201, answer.text
        listing = await served.client.get("/api/v1/tokens", headers=served.auth("admin"))
        assert listing.status_code == 200, listing.text
        assert len(listing.json()["tokens"]) == 4


async def test_a_number_json_cannot_hold_is_refused_in_any_body(
    make_settings: SettingsFactory,
) -> None:
    async with serving(make_settings(), hello_dag()) as served:
        answer = await served.client.post(
            "/api/v1/dags/hello/runs",
            content=b'{"conf": {"learning_rate": 1e999}}',
            headers={**served.auth("trigger"), "Content-Type": "application/json"},
        )
        assert answer.status_code == 400, answer.text
        assert answer.json()["error"]["code"] == "invalid_json"
        runs = await served.client.get("/api/v1/runs", headers=served.auth("read"))
        assert runs.json()["runs"] == []


@pytest.mark.parametrize(
    "expires_in",
    [float("inf"), float("nan"), 3e16, 10**400, 0, True],
    ids=["inf", "nan", "3e16", "400 digits", "zero", "bool"],
)
async def test_the_control_socket_refuses_an_unusable_expiry_before_storing(
    expires_in: object,
) -> None:
    registry = ApiRegistry({}, {}, environ={})
    ops = LocalRegistryOps(None, registry, clock=FakeClock(), dagbag=None)
    request = {"op": "tokens_create", "scope": "read", "expires_in": expires_in}
    with pytest.raises(RunError, match="expires_in"):
        await ops.handle(request)
    assert registry.tokens == {}


def test_the_cli_refuses_an_expiry_past_a_hundred_years() -> None:
    assert parse_expires("36500d") == MAX_EXPIRES_IN
    with pytest.raises(RunError, match="at most 36500d"):
        parse_expires("999999d")
