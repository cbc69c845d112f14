"""`orchestrator variables ...`: Airflow's Variables in the store: list, get, set, delete.

`set` and `delete` go through the running daemon, the store's only writer; with none, they
write the store under the state directory's lock (see `orchestrator.cli.daemonlink`). Reads
open the database read-only. Values of keys that look secret are masked in `list`, and a
value is never echoed by `set` nor sent back by the daemon.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import click

from orchestrator.cli.options import load_cli_settings, settings_options

if TYPE_CHECKING:
    from orchestrator.config import Settings

#: Words in a key that make its value a secret, as Airflow's `DEFAULT_SENSITIVE_FIELDS`.
_SENSITIVE = re.compile(
    r"password|passwd|secret|token|api_?key|private_?key|access_?key|credential|auth|key",
    re.IGNORECASE,
)
MASK = "***"


def is_sensitive(key: str) -> bool:
    """True if `key` names a secret (password, secret, token, key, ...)."""
    return _SENSITIVE.search(key) is not None


@click.group("variables")
def variables_group() -> None:
    """List, get, set and delete Variables (Airflow's `Variable`), kept in the store.

    `Variable.get` in DAG files and tasks reads AIRFLOW_VAR_<KEY> first, then these.
    """


@variables_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@settings_options
def list_command(as_json: bool) -> None:
    """List the variables; values of secret-looking keys show as ***.

    \b
    Example:
      orchestrator variables list --json
    """
    from orchestrator.cli.output import echo_json
    from orchestrator.store.variables import list_variables

    rows = [
        {
            "key": record.key,
            "value": MASK if is_sensitive(record.key) else record.value,
            "description": record.description,
        }
        for record in list_variables(_db_path(load_cli_settings()))
    ]
    if as_json:
        echo_json({"variables": rows})
    elif not rows:
        click.echo("no variables (set one with `orchestrator variables set KEY VALUE`)")
    for row in [] if as_json else rows:
        description = f"  # {row['description']}" if row["description"] else ""
        click.echo(f"{row['key']} = {row['value']}{description}")


@variables_group.command("get")
@click.argument("key")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@settings_options
def get_command(key: str, as_json: bool) -> None:
    """Print the value of KEY (from the store; AIRFLOW_VAR_* is not consulted here).

    \b
    Example:
      orchestrator variables get region
    """
    from orchestrator.cli.output import echo_json
    from orchestrator.errors import RunError
    from orchestrator.store.variables import read_variable

    value = read_variable(_db_path(load_cli_settings()), key)
    if value is None:
        raise RunError(f"there is no variable {key!r} (see `orchestrator variables list`)")
    if as_json:
        echo_json({"key": key, "value": value})
    else:
        click.echo(value)


@variables_group.command("set")
@click.argument("key")
@click.argument("value")
@click.option("--description", default="", help="What the variable is for.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@settings_options
def set_command(key: str, value: str, description: str, as_json: bool) -> None:
    """Set KEY to VALUE (a JSON text for `Variable.get(..., deserialize_json=True)`).

    \b
    Example:
      orchestrator variables set limits '{"max_rows": 500}' --description "per-run caps"
    """
    request = {"op": "variables_set", "key": key, "value": value, "description": description}
    _report(_change(request), as_json, f"set variable {key}")


@variables_group.command("delete")
@click.argument("key")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@settings_options
def delete_command(key: str, as_json: bool) -> None:
    """Delete the variable KEY.

    \b
    Example:
      orchestrator variables delete region
    """
    _report(_change({"op": "variables_delete", "key": key}), as_json, f"deleted variable {key}")


def _report(result: dict[str, Any], as_json: bool, message: str) -> None:
    from orchestrator.cli.output import echo_json

    if as_json:
        echo_json(result)
    else:
        click.echo(f"{message} (through the {result['via']})")


def _change(request: dict[str, Any]) -> dict[str, Any]:
    from orchestrator.cli.daemonlink import ask_daemon, daemon_or_locally

    settings = load_cli_settings()
    return daemon_or_locally(
        settings,
        command=f"orchestrator {request['op'].replace('_', ' ')}",
        ask=lambda holder: {**ask_daemon(settings, holder, request), "via": "daemon"},
        prepare=lambda: None,
        locally=lambda _: {**_change_locally(settings, request), "via": "store"},
    )


def _change_locally(settings: Settings, request: dict[str, Any]) -> dict[str, Any]:
    """Under the state lock: create or migrate the store, then write the variable."""
    import anyio

    from orchestrator.clock import SystemClock
    from orchestrator.daemon.variableops import answer_variable_request
    from orchestrator.store import open_store

    async def migrate() -> None:
        async with open_store(settings.state_dir, synchronous=settings.synchronous):
            pass

    anyio.run(migrate)
    return answer_variable_request(_db_path(settings), request, SystemClock().now())


def _db_path(settings: Settings) -> Any:
    from orchestrator.store.statedir import DB_FILENAME

    return settings.state_dir.absolute() / DB_FILENAME
