"""`orchestrator tokens ...`: the bearer tokens of the HTTP API: create, list, revoke.

Through the running daemon, whose registry then accepts or refuses the token at once; with
none, in the store under the state directory's lock (see `orchestrator.cli.daemonlink`), for
the daemon to load when it starts.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import click

from orchestrator.cli.options import load_cli_settings, settings_options

if TYPE_CHECKING:
    from orchestrator.config import Settings
    from orchestrator.daemon.state_lock import Holder
    from orchestrator.loading.dagbag import DagBag
    from orchestrator.store.base import Store

_SCOPES = ("read", "trigger", "admin")  # orchestrator.api.tokens.SCOPES, kept import-free
_DURATION = re.compile(r"([1-9][0-9]{0,5})([dhm])")
_UNIT_SECONDS = {"d": 86400, "h": 3600, "m": 60}
_CREATING = ("tokens_create", "webhooks_add")  # the requests that need a database to exist


@click.group("tokens")
def tokens_group() -> None:
    """Create, list and revoke the HTTP API's bearer tokens."""


def parse_expires(text: str) -> float | None:
    """`--expires` as seconds from now: `30d`, `12h`, `90m`; None for `never`."""
    from orchestrator.api.tokens import check_expires_in
    from orchestrator.errors import RunError

    if text.strip().lower() == "never":
        return None
    match = _DURATION.fullmatch(text.strip().lower())
    if match is None:
        raise RunError(
            f"--expires must be a duration such as 30d, 12h or 90m, or never; got {text!r}"
        )
    try:  # bounded as the daemon bounds it, so a refusal comes before the state lock
        return check_expires_in(int(match.group(1)) * _UNIT_SECONDS[match.group(2)])
    except RunError:
        raise RunError(f"--expires must be at most 36500d (100 years); got {text!r}") from None


# -- create -------------------------------------------------------------------------------------


@tokens_group.command("create")
@click.option(
    "--scope",
    required=True,
    type=click.Choice(_SCOPES),
    help="read: look only; trigger: also start runs; admin: everything (tokens, webhooks).",
)
@click.option("--name", default="", help="What the token is for, shown in lists (e.g. 'ci').")
@click.option(
    "--expires",
    "expires_text",
    default="never",
    show_default=True,
    metavar="30d|12h|90m|never",
    help="How long the token works.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@settings_options
def create_token(scope: str, name: str, expires_text: str, as_json: bool) -> None:
    """Create a bearer token for the HTTP API and print it, once.

    The token is shown only now: the store keeps a hash of it, so it cannot be shown again.
    Send it as `Authorization: Bearer <token>`. Reaches the daemon at once, or is recorded
    for when it starts.

    \b
    Example:
      orchestrator tokens create --scope trigger --name ci --expires 90d
    """
    from orchestrator.api.tokens import check_name
    from orchestrator.cli.daemonlink import ask_daemon, daemon_or_locally
    from orchestrator.cli.output import echo_json

    check_name(name)  # here too, so bad input is refused before the state lock is taken
    settings = load_cli_settings()
    expires_in = parse_expires(expires_text)
    request = {"op": "tokens_create", "scope": scope, "name": name, "expires_in": expires_in}
    created = daemon_or_locally(
        settings,
        command="orchestrator tokens create",
        ask=lambda holder: {**ask_daemon(settings, holder, request), "via": "daemon"},
        prepare=lambda: None,
        locally=lambda _: {**_run_locally(settings, request), "via": "store"},
    )
    if as_json:
        echo_json(created)
    else:
        _print_created(created)


def _print_created(created: dict[str, Any]) -> None:
    from orchestrator.cli.views import format_time

    expires = format_time(created["expires_at"]) if created["expires_at"] else "never"
    name = f", name {created['name']}" if created["name"] else ""
    click.echo(
        f"created token {created['token_id']} (scope {created['scope']}{name}, "
        f"expires {expires}):\n"
    )
    click.echo(f"  {created['token']}\n")
    click.echo(
        "It is shown only now and cannot be shown again: store it somewhere safe (a password "
        "manager, a CI secret).\nSend it as `Authorization: Bearer <token>`; revoke it with "
        f"`orchestrator tokens revoke {created['token_id']}`."
    )


# -- list ---------------------------------------------------------------------------------------


@tokens_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@settings_options
def list_tokens(as_json: bool) -> None:
    """List the API's tokens: id, name, scope, when created, expires and was revoked.

    Never the tokens themselves: only a hash of each is kept. Revoked and expired tokens are
    listed too, so you can see what stopped working and when.

    \b
    Example:
      orchestrator tokens list
    """
    from orchestrator.cli.output import echo_json
    from orchestrator.cli.views import make_console

    tokens = list(_fetch(load_cli_settings(), {"op": "tokens_list"})["tokens"])
    if as_json:
        echo_json(tokens)
    elif not tokens:
        click.echo("No API tokens yet: create one with `orchestrator tokens create --scope read`.")
    else:
        make_console().print(_tokens_table(tokens))


def _tokens_table(tokens: list[dict[str, Any]]) -> Any:
    import time

    from rich import box
    from rich.table import Table

    from orchestrator.cli.views import format_time

    now = time.time()
    table = Table(box=box.SIMPLE_HEAD)
    for column in ("id", "name", "scope", "created", "expires", "status"):
        table.add_column(column, no_wrap=True)
    for token in tokens:
        table.add_row(
            token["token_id"],
            token["name"] or "-",
            token["scope"],
            format_time(token["created_at"]),
            format_time(token["expires_at"]) if token["expires_at"] else "never",
            _status(token, now),
        )
    return table


def _status(token: dict[str, Any], now: float) -> str:
    from orchestrator.cli.views import format_time

    if token["revoked_at"] is not None:
        return f"revoked {format_time(token['revoked_at'])}"
    if token["expires_at"] is not None and now >= token["expires_at"]:
        return "expired"
    return "active"


# -- revoke -------------------------------------------------------------------------------------


@tokens_group.command("revoke")
@click.argument("token_id")
@settings_options
def revoke_token(token_id: str) -> None:
    """Revoke a token: requests sending it are refused from now on.

    TOKEN_ID is the public id `tokens list` shows (the 12 hex digits after `orch_`).
    Revoking a revoked token changes nothing.

    \b
    Example:
      orchestrator tokens revoke 3f9a0c2b71de
    """
    from orchestrator.cli.daemonlink import ask_daemon, daemon_or_locally

    settings = load_cli_settings()
    request = {"op": "tokens_revoke", "token_id": token_id}
    revoked = daemon_or_locally(
        settings,
        command=f"orchestrator tokens revoke {token_id}",
        ask=lambda holder: ask_daemon(settings, holder, request),
        prepare=lambda: None,
        locally=lambda _: _run_locally(settings, request),
    )
    name = f" ({revoked['name']})" if revoked["name"] else ""
    click.echo(f"revoked token {token_id}{name}: requests sending it are refused")


# -- without a daemon ---------------------------------------------------------------------------


def _fetch(settings: Settings, request: dict[str, Any]) -> dict[str, Any]:
    """A listing from the daemon when one runs, else read from the store (no lock needed)."""
    from orchestrator.cli.daemonlink import ask_daemon, running_daemon

    holder: Holder | None = running_daemon(settings)
    if holder is not None:
        return ask_daemon(settings, holder, request)
    return registry_request(settings, request, write=False)


def _run_locally(settings: Settings, request: dict[str, Any]) -> dict[str, Any]:
    return registry_request(settings, request, write=True)


def registry_request(
    settings: Settings, request: dict[str, Any], *, write: bool, dagbag: DagBag | None = None
) -> dict[str, Any]:
    """Answer a token or webhook request as the daemon would, on the store, in this process.

    For a write the caller holds the state directory's lock (`daemon_or_locally`); a read
    opens the store read-only, and finds nothing before the store exists.
    """
    import anyio

    return anyio.run(_answer, settings, request, write, dagbag)


async def _answer(
    settings: Settings, request: dict[str, Any], write: bool, dagbag: DagBag | None
) -> dict[str, Any]:
    from orchestrator.cli.lookup import has_state
    from orchestrator.store import open_store

    if not has_state(settings) and (not write or request["op"] not in _CREATING):
        # Nothing recorded yet: answered (or refused) without creating the database.
        return await _answer_with(None, request, dagbag)
    async with open_store(
        settings.state_dir, synchronous=settings.synchronous, readonly=not write
    ) as store:
        return await _answer_with(store, request, dagbag)


async def _answer_with(
    store: Store | None, request: dict[str, Any], dagbag: DagBag | None
) -> dict[str, Any]:
    from orchestrator.api.registry import ApiRegistry
    from orchestrator.api.registryops import LocalRegistryOps
    from orchestrator.clock import SystemClock

    if store is None:  # nothing recorded yet
        registry = ApiRegistry({}, {}, environ={})
    else:
        registry = await ApiRegistry.load(store)
    ops = LocalRegistryOps(store, registry, clock=SystemClock(), dagbag=dagbag)
    return await ops.handle(request)
