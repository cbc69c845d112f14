"""`variables_set` and `variables_delete`: the requests that change Airflow's Variables.

The daemon answers them over its control socket (it owns the store); with no daemon the CLI
answers them itself under the state directory's lock. Both call `answer_variable_request`,
so both check and write alike. Replies never hold the value: it may be a secret.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from orchestrator.errors import RunError
from orchestrator.store.variables import VariableRecord, delete_variable, put_variable


def answer_variable_request(db_path: Path, request: dict[str, Any], now: float) -> dict[str, Any]:
    """Apply `request` (`op`, `key`, and for a set `value` and `description`) to the store."""
    key = request.get("key")
    if not isinstance(key, str) or not key.strip():
        raise RunError("a variable's key must be a non-empty string")
    if request.get("op") == "variables_delete":
        if not delete_variable(db_path, key):
            raise RunError(f"there is no variable {key!r}")
        return {"key": key, "deleted": True}
    value, description = request.get("value"), request.get("description", "")
    if not isinstance(value, str) or not isinstance(description, str):
        raise RunError("a variable's value and description must be strings")
    put_variable(
        db_path, VariableRecord(key=key, value=value, description=description, updated_at=now)
    )
    return {"key": key, "set": True}
