"""Airflow's `Connection`, found as Airflow's secrets backends find it: environment, then file.

`AIRFLOW_CONN_<CONN_ID>` (a URI, or a JSON object) comes first, then the `connections_file`
setting: a JSON object of conn_id to a URI or an object of fields, as Airflow's
local-filesystem secrets backend reads. The file is named by `ORCHESTRATOR_CONNECTIONS_FILE`,
which the engine sets to its setting while it runs so DAG-file checks and workers (its child
processes) read the same file. It is parsed again only when its modification time or size
changes, so a task may look a connection up in a loop.

A password never appears in an error: messages name the variable or file and the conn_id.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qsl, quote, unquote, urlsplit

from orchestrator.airflow_compat.exceptions import AirflowException, AirflowNotFoundException
from orchestrator.errors import ConfigError

CONNECTIONS_FILE_VARIABLE = "ORCHESTRATOR_CONNECTIONS_FILE"
ENV_PREFIX = "AIRFLOW_CONN_"
#: The fields a connection given as a JSON object may have, as in Airflow.
FIELDS = ("conn_type", "host", "login", "password", "schema", "port", "extra", "description")

Source = Literal["env", "file"]


class ConnectionSourceError(AirflowException, ConfigError):
    """A connection's URI or JSON cannot be read; names where and the conn_id, never a secret."""


class Connection:
    """A connection's fields, read from a URI or JSON."""

    def __init__(
        self,
        conn_id: str | None = None,
        conn_type: str | None = None,
        host: str | None = None,
        login: str | None = None,
        password: str | None = None,
        schema: str | None = None,
        port: int | None = None,
        extra: str | dict[str, Any] | None = None,
        uri: str | None = None,
        **_: Any,
    ) -> None:
        self.conn_id = conn_id
        self.conn_type, self.host, self.login, self.password = conn_type, host, login, password
        self.schema, self.port = schema, port
        self.extra = json.dumps(extra) if isinstance(extra, dict) else extra
        if uri:
            self._parse(uri)

    def _parse(self, uri: str) -> None:
        parts = urlsplit(uri)
        self.conn_type = parts.scheme.replace("-", "_")
        self.host = unquote(parts.hostname or "") or None
        self.login = unquote(parts.username) if parts.username else None
        self.password = unquote(parts.password) if parts.password else None
        self.port = parts.port
        self.schema = unquote(parts.path.lstrip("/")) or None
        query = dict(parse_qsl(parts.query))
        extra = query.pop("__extra__", None)
        self.extra = extra if extra is not None else (json.dumps(query) if query else None)

    @property
    def extra_dejson(self) -> dict[str, Any]:
        return json.loads(self.extra) if self.extra else {}

    def get_uri(self) -> str:
        auth = ""
        if self.login or self.password:
            auth = f"{quote(self.login or '', safe='')}:{quote(self.password or '', safe='')}@"
        port = f":{self.port}" if self.port else ""
        return f"{self.conn_type}://{auth}{self.host or ''}{port}/{self.schema or ''}"

    def __repr__(self) -> str:  # never the password: reprs end up in logs
        return f"Connection(conn_id={self.conn_id!r}, conn_type={self.conn_type!r})"

    @classmethod
    def get_connection_from_secrets(cls, conn_id: str) -> Connection:
        return find_connection(conn_id)[0]

    get = get_connection_from_secrets


def find_connection(conn_id: str) -> tuple[Connection, Source]:
    """`conn_id` from `AIRFLOW_CONN_<CONN_ID>`, else the connections file, and which it was."""
    variable = f"{ENV_PREFIX}{conn_id.upper()}"
    text = os.environ.get(variable)
    if text is not None:
        return connection_from(conn_id, text, where=variable), "env"
    path = connections_file()
    if path is not None and conn_id in (entries := read_connections_file(path)):
        return connection_from(conn_id, entries[conn_id], where=str(path)), "file"
    in_file = f", or add it to {path}" if path is not None else ""
    raise AirflowNotFoundException(
        f"The conn_id `{conn_id}` isn't defined (set {variable}{in_file})"
    )


def list_connections() -> list[tuple[Connection, Source]]:
    """Every connection of the environment and the file, by conn_id; the environment wins."""
    found: dict[str, tuple[Connection, Source]] = {}
    path = connections_file()
    entries = read_connections_file(path) if path is not None else {}
    for conn_id, entry in entries.items():
        found[conn_id] = (connection_from(conn_id, entry, where=str(path)), "file")
    for variable, text in os.environ.items():
        if variable.startswith(ENV_PREFIX) and len(variable) > len(ENV_PREFIX):
            conn_id = _env_conn_id(variable, found)
            found[conn_id] = (connection_from(conn_id, text, where=variable), "env")
    return [found[conn_id] for conn_id in sorted(found)]


def _env_conn_id(variable: str, found: dict[str, tuple[Connection, Source]]) -> str:
    """The conn_id `variable` holds: a file entry's own spelling if the names match, as Airflow
    looks `AIRFLOW_CONN_<CONN_ID.upper()>` up; else the lower-cased suffix."""
    suffix = variable.removeprefix(ENV_PREFIX)
    return next((conn_id for conn_id in found if conn_id.upper() == suffix), suffix.lower())


def connection_from(conn_id: str, entry: Any, *, where: str) -> Connection:
    """A `Connection` from a URI, a JSON text of fields or a dict of fields."""
    if isinstance(entry, str) and entry.lstrip().startswith("{"):
        try:
            entry = json.loads(entry)
        except json.JSONDecodeError as error:  # its message has a position, not the text
            raise _invalid(conn_id, where, f"is not valid JSON ({error})") from None
    if isinstance(entry, dict):
        return Connection(conn_id=conn_id, **_checked_fields(conn_id, entry, where))
    if not isinstance(entry, str):
        raise _invalid(conn_id, where, f"must be a URI or an object, got {type(entry).__name__}")
    return _from_uri(conn_id, entry, where)


def _from_uri(conn_id: str, uri: str, where: str) -> Connection:
    if "://" not in uri or not urlsplit(uri.strip()).scheme:
        raise _invalid(conn_id, where, "is not a URI (such as postgres://user:pass@host:5432/db)")
    try:
        return Connection(conn_id=conn_id, uri=uri.strip())
    except ValueError:  # a port that is not a number, a bad IPv6 host: say so, not the URI
        raise _invalid(conn_id, where, "is not a valid URI (check its host and port)") from None


def _checked_fields(conn_id: str, fields: dict[str, Any], where: str) -> dict[str, Any]:
    unknown = sorted(set(fields) - set(FIELDS))
    if unknown:
        raise _invalid(conn_id, where, f"has unknown fields {unknown}; known: {', '.join(FIELDS)}")
    checked = dict(fields)
    port = checked.get("port")
    if isinstance(port, str) and port.strip().isdigit():
        checked["port"] = int(port)
    elif port is not None and (not isinstance(port, int) or isinstance(port, bool)):
        raise _invalid(conn_id, where, "has a port that is not a whole number")
    for name in ("conn_type", "host", "login", "password", "schema", "description"):
        if checked.get(name) is not None and not isinstance(checked[name], str):
            raise _invalid(conn_id, where, f"has a {name} that is not a string")
    if checked.get("extra") is not None and not isinstance(checked["extra"], str | dict):
        raise _invalid(conn_id, where, "has an extra that is neither an object nor a string")
    return checked


def _invalid(conn_id: str, where: str, problem: str) -> ConnectionSourceError:
    return ConnectionSourceError(f"connection {conn_id!r} in {where} {problem}")


# -- the connections file -----------------------------------------------------------------------

_cache: dict[Path, tuple[tuple[int, int], dict[str, Any]]] = {}


def connections_file() -> Path | None:
    """The file named by `ORCHESTRATOR_CONNECTIONS_FILE` (relative: to the working folder)."""
    named = os.environ.get(CONNECTIONS_FILE_VARIABLE, "").strip()
    return Path(os.path.abspath(Path(named).expanduser())) if named else None


def read_connections_file(path: Path) -> dict[str, Any]:
    """The file's entries, conn_id to a URI or a dict; parsed again when it changes."""
    try:
        status = path.stat()
    except OSError as error:
        raise ConnectionSourceError(
            f"cannot read the connections file {path}: {error.strerror}"
        ) from None
    stamp = (status.st_mtime_ns, status.st_size)
    cached = _cache.get(path)
    if cached is None or cached[0] != stamp:
        cached = _cache[path] = (stamp, _parse_file(path))
    return cached[1]


def _parse_file(path: Path) -> dict[str, Any]:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as error:
        raise ConnectionSourceError(f"cannot read the connections file {path}: {error}") from None
    except json.JSONDecodeError as error:  # a position, never the text around it
        raise ConnectionSourceError(
            f"the connections file {path} is not valid JSON: {error.msg} at line {error.lineno}, "
            f"column {error.colno}"
        ) from None
    if not isinstance(document, dict):
        raise ConnectionSourceError(
            f"the connections file {path} must hold a JSON object of conn_id to a URI or an "
            f'object of fields, such as {{"warehouse": "postgres://user:pass@host:5432/db"}}'
        )
    return document


@contextmanager
def exported_connections_file(path: Path | None) -> Iterator[None]:
    """Name `path` (or no file) in this process's environment while the block runs."""
    previous = os.environ.get(CONNECTIONS_FILE_VARIABLE)
    if path is None:
        os.environ.pop(CONNECTIONS_FILE_VARIABLE, None)
    else:
        os.environ[CONNECTIONS_FILE_VARIABLE] = str(path.absolute())
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(CONNECTIONS_FILE_VARIABLE, None)
        else:
            os.environ[CONNECTIONS_FILE_VARIABLE] = previous
