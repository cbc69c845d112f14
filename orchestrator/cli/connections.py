"""`orchestrator connections ...`: the Airflow connections tasks would see: list, get.

Both read what `BaseHook.get_connection` reads, in its order: `AIRFLOW_CONN_*` in this
command's environment, then the `connections_file` setting; no daemon is needed, and nothing
is written. Passwords show as `***`; only `get --show-password` prints one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from orchestrator.cli.options import load_cli_settings, settings_options

if TYPE_CHECKING:
    from orchestrator.airflow_compat.connections import Connection, Source

MASK = "***"


@click.group("connections")
def connections_group() -> None:
    """List and show Airflow connections (`BaseHook.get_connection`): env, then a file.

    AIRFLOW_CONN_<CONN_ID> (a URI or JSON) comes first, then the JSON file named by the
    `connections_file` setting (ORCHESTRATOR_CONNECTIONS_FILE).
    """


@connections_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@settings_options
def list_command(as_json: bool) -> None:
    """List the connections: conn_id, type, host, port, login and where each comes from.

    Passwords always show as ***. `source` is env (AIRFLOW_CONN_*) or file (connections_file);
    a conn_id in both is the environment's, as for tasks.

    \b
    Example:
      orchestrator connections list --json
    """
    from orchestrator.airflow_compat.connections import list_connections
    from orchestrator.cli.output import echo_json
    from orchestrator.cli.views import make_console

    with _connections_file():
        found = list_connections()
    listed = ("conn_id", "conn_type", "host", "port", "login", "password", "source")
    rows = [
        {name: value for name, value in _row(connection, source).items() if name in listed}
        for connection, source in found
    ]
    if as_json:
        echo_json({"connections": rows})
    elif not rows:
        click.echo(
            "no connections (set AIRFLOW_CONN_<CONN_ID>, or name a JSON file with the "
            "`connections_file` setting)"
        )
    else:
        make_console().print(_table(rows))


@connections_group.command("get")
@click.argument("conn_id")
@click.option("--show-password", is_flag=True, help="Print the password instead of ***.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@settings_options
def get_command(conn_id: str, show_password: bool, as_json: bool) -> None:
    """Show the connection CONN_ID as a task would get it; its password as *** by default.

    \b
    Example:
      orchestrator connections get warehouse --json
    """
    from orchestrator.airflow_compat.connections import find_connection
    from orchestrator.airflow_compat.exceptions import AirflowNotFoundException
    from orchestrator.cli.output import echo_json
    from orchestrator.errors import RunError

    with _connections_file():
        try:
            connection, source = find_connection(conn_id)
        except AirflowNotFoundException as error:
            raise RunError(f"{error}; see `orchestrator connections list`") from None
    row = _row(connection, source, show_password=show_password)
    if as_json:
        echo_json(row)
    for name, value in [] if as_json else row.items():
        click.echo(f"{name}: {_text(value)}")


def _row(connection: Connection, source: Source, *, show_password: bool = False) -> dict[str, Any]:
    """Its fields; the password, and values of secret-looking keys of `extra`, as ***."""
    password = connection.password
    return {
        "conn_id": connection.conn_id,
        "conn_type": connection.conn_type,
        "host": connection.host,
        "port": connection.port,
        "login": connection.login,
        "password": password if show_password or password is None else MASK,
        "schema": connection.schema,
        "extra": _extra(connection.extra, show_password),
        "source": source,
    }


def _extra(text: str | None, show_password: bool) -> Any:
    import json

    from orchestrator.cli.variables import is_sensitive

    if text is None:
        return None
    try:
        extra = json.loads(text)
    except json.JSONDecodeError:  # not JSON: nothing says which part of it is a secret
        return text if show_password else MASK
    if not isinstance(extra, dict) or show_password:
        return extra
    return {key: MASK if is_sensitive(key) else value for key, value in extra.items()}


def _table(rows: list[dict[str, Any]]) -> Any:
    from rich import box
    from rich.table import Table

    table = Table(box=box.SIMPLE_HEAD)
    for column in ("conn_id", "conn_type", "host", "port", "login", "password", "source"):
        table.add_column(column, no_wrap=True)
    for row in rows:
        table.add_row(*(_cell(value) for value in row.values()))
    return table


def _text(value: Any) -> str:
    import json

    return "" if value is None else json.dumps(value) if isinstance(value, dict) else str(value)


def _cell(value: Any) -> str:
    return "-" if value is None else str(value)


def _connections_file() -> Any:
    """This invocation's `connections_file`, named where the connection lookup reads it."""
    from orchestrator.airflow_compat.connections import exported_connections_file

    return exported_connections_file(load_cli_settings().connections_file)
