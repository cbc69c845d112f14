"""The rendered template fields of each try, as Airflow's "Rendered Template" view shows them.

When a try renders its operator's `template_fields`, the values are written as a small JSON
file beside the try's log (`<log>.rendered.json`): it lives under the state directory, so it
survives a restart, and goes wherever the log goes (a Dask worker's comes back with the try's
outcome and is written beside the daemon's copy of the log). Secrets are masked as Airflow's secrets
masker does: the values of Variables and connection passwords whose names look sensitive
(password, secret, token, key, ...) are replaced by `***` wherever they appear, and so is any
dict item whose key looks sensitive. `orchestrator tasks rendered` and the run page read them.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

MASK = "***"
SUFFIX = ".rendered.json"
#: As Airflow's DEFAULT_SENSITIVE_FIELDS: a name containing one of these is a secret.
SENSITIVE_WORDS = (
    "password", "passwd", "passphrase", "secret", "token", "key", "authorization", "private",
)  # fmt: skip
_SHORTEST_MASKED = 3  # masking "a" or "1" everywhere would hide the rendered text itself


def is_sensitive(name: str) -> bool:
    lowered = name.lower()
    return any(word in lowered for word in SENSITIVE_WORDS)


def sidecar_path(log_path: str | os.PathLike[str]) -> Path:
    """Where the rendered fields of the try logging to `log_path` are kept."""
    path = Path(log_path)
    return path.with_name(path.name + SUFFIX)


def record_rendered(operator: Any, log_path: str) -> None:
    """Write the operator's rendered `template_fields`, masked, beside the try's log."""
    names = list(getattr(operator, "template_fields", ()) or ())
    if not log_path or not names:
        return
    secrets = sorted(_secret_values(), key=len, reverse=True)
    fields = {name: masked(_plain(getattr(operator, name, None)), secrets) for name in names}
    try:
        keep_rendered(log_path, json.dumps({"fields": fields}, ensure_ascii=False, indent=1))
    except OSError as error:  # no folder (a log not on this machine): the try goes on
        print(f"Could not record the rendered fields: {error}")


def keep_rendered(log_path: str | os.PathLike[str], text: str) -> None:
    """Write recorded fields (this try's, or a Dask worker's shipped back) beside the log."""
    target = sidecar_path(log_path)
    temporary = target.with_name(target.name + ".tmp")
    try:
        temporary.write_text(text)
    except FileNotFoundError:  # the run's folder is made by the first log written in it
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary.write_text(text)
    temporary.replace(target)


def take_rendered(log_path: str | os.PathLike[str]) -> str | None:
    """The fields recorded beside `log_path`, removed: a Dask worker ships them to the daemon,
    and the next try that logs to the same place must not find them."""
    path = sidecar_path(log_path)
    try:
        text = path.read_text()
    except OSError:
        return None
    path.unlink(missing_ok=True)
    return text


def read_rendered(log_path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The rendered fields recorded for the try logging to `log_path`; None if none were."""
    try:
        data = json.loads(sidecar_path(log_path).read_text())
    except (OSError, ValueError):
        return None
    fields = data.get("fields") if isinstance(data, dict) else None
    return fields if isinstance(fields, dict) else None


def masked(value: Any, secrets: list[str]) -> Any:
    """`value` with every known secret, and every item under a sensitive key, as `***`."""
    if isinstance(value, str):
        for secret in secrets:
            value = value.replace(secret, MASK)
        return value
    if isinstance(value, list):
        return [masked(item, secrets) for item in value]
    if isinstance(value, dict):
        return {
            key: MASK if is_sensitive(str(key)) else masked(item, secrets)
            for key, item in value.items()
        }
    return value


def _plain(value: Any) -> Any:
    """JSON values as they are; anything else as its text (a rendered field may be any object)."""
    return json.loads(json.dumps(value, default=str))


def _secret_values() -> Iterator[str]:
    """Values of sensitive Variables (AIRFLOW_VAR_*) and passwords of connections."""
    for name, text in os.environ.items():
        if name.startswith("AIRFLOW_VAR_") and is_sensitive(name[len("AIRFLOW_VAR_") :]):
            yield from _long_enough([text, *_json_strings(text)])
        elif name.startswith("AIRFLOW_CONN_"):
            yield from _long_enough([_connection_password(text)])


def _json_strings(text: str) -> list[str]:
    """The strings inside a JSON Variable (`var.json.x.password` renders just that part)."""
    try:
        data = json.loads(text)
    except ValueError:
        return []
    found: list[str] = []

    def walk(item: Any) -> None:
        if isinstance(item, str):
            found.append(item)
        elif isinstance(item, list):
            for each in item:
                walk(each)
        elif isinstance(item, dict):
            for each in item.values():
                walk(each)

    walk(data)
    return found


def _connection_password(text: str) -> str:
    if text.lstrip().startswith("{"):
        try:
            return str(json.loads(text).get("password") or "")
        except (ValueError, AttributeError):
            return ""
    password = urlsplit(text).password
    return unquote(password) if password else ""


def _long_enough(values: list[str]) -> list[str]:
    return [value for value in values if len(value) >= _SHORTEST_MASKED]
