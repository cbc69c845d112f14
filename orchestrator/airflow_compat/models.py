"""Airflow's `Param`, `Variable`, `Connection` and `BaseHook`, without Airflow's database.

Variables come from `AIRFLOW_VAR_<KEY>` environment variables, then the store
(`orchestrator variables set`); connections from `AIRFLOW_CONN_<CONN_ID>` (a URI or JSON), then
the `connections_file` setting's JSON file, as with Airflow's secrets backends (see
`connections`).
`Param` validates a run's value against its JSON schema with `jsonschema`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from typing import Any, ClassVar

from orchestrator.airflow_compat.connections import Connection
from orchestrator.airflow_compat.exceptions import AirflowException
from orchestrator.store.variables import read_variable, variables_db

_NOTSET: Any = object()


class Param:
    """A DAG param: a default value and a JSON schema that run values must satisfy."""

    def __init__(self, default: Any = _NOTSET, description: str | None = None, **schema: Any):
        self.value = None if default is _NOTSET else default
        self.has_default = default is not _NOTSET
        self.description = description
        self.schema = schema

    def resolve(self, value: Any, name: str) -> Any:
        """`value`, checked against the schema; `AirflowException` naming the param if not."""
        import jsonschema

        if not self.schema:
            return value
        try:
            jsonschema.validate(value, self.schema, format_checker=jsonschema.FormatChecker())
        except jsonschema.ValidationError as error:
            where = "".join(f"[{part!r}]" for part in error.absolute_path)
            raise AirflowException(
                f"Invalid input for param {name}{where}: {error.message}"
            ) from None
        return value

    def __repr__(self) -> str:
        return f"Param({self.value!r}, {self.schema!r})"


class ParamsDict(Mapping[str, Any]):
    """The run's params, by name."""

    def __init__(self, values: Mapping[str, Any] | None = None) -> None:
        self._values = dict(values or {})

    def __getitem__(self, name: str) -> Any:
        value = self._values[name]
        return value.value if isinstance(value, Param) else value

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)


class Variable:
    """`Variable.get("key")`: `AIRFLOW_VAR_KEY` from the environment, else the store.

    As in Airflow, the environment comes before the database. `Variable.set` writes to the
    store only through its owner: outside an engine (no store known) it is kept for this
    process; under a daemon or `orchestrator run` it is refused, as a task's write would race
    the store's only writer: use `orchestrator variables set`.
    """

    _set: ClassVar[dict[str, str]] = {}

    @classmethod
    def get(
        cls, key: str, default_var: Any = _NOTSET, deserialize_json: bool = False, **_: Any
    ) -> Any:
        text = os.environ.get(f"AIRFLOW_VAR_{key.upper()}")
        if text is None:
            text = cls._set.get(key)
        if text is None and (db_path := variables_db()) is not None:
            text = read_variable(db_path, key)
        if text is None:
            if default_var is _NOTSET:
                raise KeyError(
                    f"Variable {key} does not exist (set AIRFLOW_VAR_{key.upper()}, "
                    f"or `orchestrator variables set {key} VALUE`)"
                )
            return default_var
        return json.loads(text) if deserialize_json else text

    @classmethod
    def set(cls, key: str, value: Any, serialize_json: bool = False, **_: Any) -> None:
        """Keep `value` for this process; refused while an engine owns the store."""
        if variables_db() is not None:
            raise AirflowException(
                f"Variable.set({key!r}) cannot write to the store from DAG or task code: the "
                "daemon (or `orchestrator run`) is its only writer. Set it with "
                f"`orchestrator variables set {key} VALUE`, or pass the value as a task result."
            )
        cls._set[key] = json.dumps(value) if serialize_json else str(value)


class BaseHook:
    """Only `BaseHook.get_connection(conn_id)`: hooks of providers are not supported."""

    @classmethod
    def get_connection(cls, conn_id: str) -> Connection:
        return Connection.get_connection_from_secrets(conn_id)


__all__ = ("BaseHook", "Connection", "Param", "ParamsDict", "Variable")
