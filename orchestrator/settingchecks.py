"""What each setting accepts: one check per key, and how environment and flag text is read.

`config` finds the sources (file, environment, flags) and merges them; this module holds the
rules for one value, so adding a setting means one entry in `CHECKS` (and, if it comes from text,
a line in `from_text`). Every bad value is a `ConfigError` that names where it came from (through
a `Label`) and what is allowed, so a typo never silently falls back to a default. Only the
standard library is imported: settings are loaded at the start of every CLI command.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from orchestrator.alertconfig import check_channels, check_rules
from orchestrator.errors import ConfigError

SYNCHRONOUS_MODES = ("NORMAL", "FULL", "EXTRA")
LOG_FORMATS = ("text", "json")
EXECUTORS = ("local", "dask")
#: The schemes of Dask's comms a scheduler address may use.
DASK_SCHEMES = ("tcp", "tls", "ucx", "ws", "wss", "inproc")

#: Turns a setting's key into words naming where its value came from, for error messages:
#: "`slots` in /etc/orchestrator.toml", "ORCHESTRATOR_SLOTS", "--slots".
Label = Callable[[str], str]


def from_text(name: str, text: str, label: str) -> Any:
    """An environment variable's or flag's text as the setting's type."""
    text = text.strip()
    if name in _WHOLE_NUMBERS:
        try:
            return int(text)
        except ValueError:
            raise ConfigError(f"{label} must be a whole number, got {text!r}") from None
    if name in _NUMBERS:
        try:
            return float(text)
        except ValueError:
            raise ConfigError(f"{label} must be a number, got {text!r}") from None
    if name in ("in_process", "allow_private_urls", "api_enabled", "metrics_public"):
        return _boolean_from_text(text, label)
    if name == "allowed_roots":
        return [part for part in text.split(os.pathsep) if part.strip()]
    if name == "allowed_hosts":  # commas: IPv6 hosts contain colons
        return [part.strip() for part in text.split(",") if part.strip()]
    return text


_WHOLE_NUMBERS = (
    "slots",
    "result_max_bytes",
    "task_log_max_bytes",
    "worker_max_tasks",
    "triggerer_capacity",
    "api_port",
    "api_max_body",
    "api_max_json_depth",
    "api_max_connections",
    "api_max_header_bytes",
    "api_max_headers",
    "max_queued_runs",
    "dag_import_max_memory_mb",
    "max_interrupted_tries",
    "ui_max_streams_per_client",
)
_NUMBERS = (
    "shutdown_grace",
    "webhook_rate",
    "dag_trigger_rate",
    "api_header_timeout",
    "api_body_timeout",
    "webhook_replay_window",
    "ui_session_seconds",
    "ui_login_rate",
    "dag_import_timeout",
)
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def _boolean_from_text(text: str, label: str) -> bool:
    if text.lower() in _TRUE:
        return True
    if text.lower() in _FALSE:
        return False
    choices = ", ".join((*_TRUE, *_FALSE))
    raise ConfigError(f"{label} must be true or false (one of {choices}), got {text!r}")


def _check_path(value: Any, label: Label, key: str) -> Path:
    if not isinstance(value, str | os.PathLike) or not str(value).strip():
        raise ConfigError(f"{label(key)} must be a non-empty path string, got {value!r}")
    return Path(value)


def _check_count(value: Any, label: Label, key: str) -> int:
    # bool is an int subclass: `slots = true` is a mistake, not 1.
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigError(f"{label(key)} must be a whole number of 1 or more, got {value!r}")
    return value


def _check_log_cap(value: Any, label: Label) -> int:
    count = _check_count(value, label, "task_log_max_bytes")
    if count < 4096:  # room for a head, a tail and the marker between them
        raise ConfigError(f"{label('task_log_max_bytes')} must be 4096 or more, got {count}")
    return count


def _check_seconds(value: Any, label: Label, key: str) -> float:
    if not isinstance(value, int | float) or isinstance(value, bool) or not 0 <= value < 1e6:
        raise ConfigError(f"{label(key)} must be a number of seconds from 0, got {value!r}")
    return float(value)


def _check_timeout(value: Any, label: Label, key: str) -> float:
    if not isinstance(value, int | float) or isinstance(value, bool) or not 0 < value < 1e6:
        raise ConfigError(f"{label(key)} must be a number of seconds above 0, got {value!r}")
    return float(value)


def _check_rate(value: Any, label: Label, key: str) -> float:
    if not isinstance(value, int | float) or isinstance(value, bool) or not 0 < value < 1e9:
        raise ConfigError(
            f"{label(key)} must be a number of requests per second above 0, got {value!r}"
        )
    return float(value)


def _check_megabytes(value: Any, label: Label, key: str, *, least: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < least:
        raise ConfigError(
            f"{label(key)} must be a whole number of MiB, at least {least}, got {value!r}"
        )
    return value


def _check_port(value: Any, label: Label) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 65535:
        raise ConfigError(
            f"{label('api_port')} must be a TCP port from 1 to 65535 (or 0 for any free port), "
            f"got {value!r}"
        )
    return value


def _check_host(value: Any, label: Label) -> str:
    if not isinstance(value, str) or not value.strip() or any(c.isspace() for c in value.strip()):
        raise ConfigError(
            f"{label('api_host')} must be an address to listen on, such as 127.0.0.1, got {value!r}"
        )
    return value.strip()


def _check_boolean(value: Any, label: Label, key: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{label(key)} must be true or false, got {value!r}")
    return value


def _check_choice(value: Any, label: Label, key: str, choices: tuple[str, ...]) -> str:
    # Accepted in any case, stored in the case of `choices` (SQLite modes upper, formats lower).
    by_lower = {choice.lower(): choice for choice in choices}
    if not isinstance(value, str) or value.strip().lower() not in by_lower:
        raise ConfigError(f"{label(key)} must be one of {', '.join(choices)}, got {value!r}")
    return by_lower[value.strip().lower()]


def _check_worker_max_tasks(value: Any, label: Label) -> int | None:
    if value is None:
        return None
    try:
        return _check_count(value, label, "worker_max_tasks")
    except ConfigError as error:
        raise ConfigError(f"{error} (leave it out to never recycle workers)") from None


def _check_roots(value: Any, label: Label) -> tuple[Path, ...]:
    if isinstance(value, str | os.PathLike) or not isinstance(value, list | tuple):
        raise ConfigError(
            f"{label('allowed_roots')} must be a list of folders, got {value!r}"
            f" (in the environment: folders separated by {os.pathsep!r})"
        )
    return tuple(_check_path(root, label, "allowed_roots") for root in value)


def _check_hosts(value: Any, label: Label) -> tuple[str, ...]:
    if not isinstance(value, list | tuple) or not all(
        isinstance(host, str) and host.strip() for host in value
    ):
        raise ConfigError(
            f'{label("allowed_hosts")} must be a list of host names ("host" or "host:port"),'
            f" got {value!r} (in the environment: separated by commas)"
        )
    return tuple(host.strip() for host in value)


def _check_pools(value: Any, label: Label) -> dict[str, int]:
    if not isinstance(value, Mapping):
        raise ConfigError(
            f"{label('pools')} must be a table of pool names and slots "
            f"(`[pools]` then `gpu = 1`), got {value!r}"
        )
    pools: dict[str, int] = {}
    for name, slots in value.items():
        if not isinstance(name, str) or not name.strip():
            raise ConfigError(f"{label('pools')} has a pool without a name: {name!r}")
        pools[name] = _check_count(slots, label, f"pools.{name}")
    return pools


def _check_public_url(value: Any, label: Label) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.startswith(("http://", "https://")):
        raise ConfigError(
            f"{label('public_url')} must be the http(s) address users reach the daemon at "
            f"(such as https://orchestrator.example.com), got {value!r}"
        )
    return value.rstrip("/")


def _check_dask_address(value: Any, label: Label) -> str | None:
    if value is None:
        return None
    scheme, _, rest = (
        str(value).strip().partition("://") if isinstance(value, str) else ("", "", "")
    )
    if scheme not in DASK_SCHEMES or not rest or any(c.isspace() for c in rest):
        raise ConfigError(
            f"{label('dask_address')} must be a Dask scheduler's address, such as "
            f"tcp://127.0.0.1:8786 (schemes: {', '.join(DASK_SCHEMES)}), got {value!r}"
        )
    return f"{scheme}://{rest}"


def _check_optional_path(value: Any, label: Label, key: str) -> Path | None:
    return None if value is None else _check_path(value, label, key)


CHECKS: dict[str, Callable[[Any, Label], Any]] = {
    "state_dir": lambda value, label: _check_path(value, label, "state_dir"),
    "dags_folder": lambda value, label: _check_path(value, label, "dags_folder"),
    "slots": lambda value, label: _check_count(value, label, "slots"),
    "pools": _check_pools,
    "result_max_bytes": lambda value, label: _check_count(value, label, "result_max_bytes"),
    "task_log_max_bytes": lambda value, label: _check_log_cap(value, label),
    "in_process": lambda value, label: _check_boolean(value, label, "in_process"),
    "worker_max_tasks": _check_worker_max_tasks,
    "executor": lambda value, label: _check_choice(value, label, "executor", EXECUTORS),
    "dask_address": _check_dask_address,
    "synchronous": lambda value, label: _check_choice(
        value, label, "synchronous", SYNCHRONOUS_MODES
    ),
    "log_format": lambda value, label: _check_choice(value, label, "log_format", LOG_FORMATS),
    "triggerer_capacity": lambda value, label: _check_count(value, label, "triggerer_capacity"),
    "shutdown_grace": lambda value, label: _check_seconds(value, label, "shutdown_grace"),
    "allowed_roots": _check_roots,
    "allow_private_urls": lambda value, label: _check_boolean(value, label, "allow_private_urls"),
    "allowed_hosts": _check_hosts,
    "api_enabled": lambda value, label: _check_boolean(value, label, "api_enabled"),
    "api_host": _check_host,
    "api_port": _check_port,
    "api_max_body": lambda value, label: _check_count(value, label, "api_max_body"),
    "api_max_json_depth": lambda value, label: _check_count(value, label, "api_max_json_depth"),
    "api_max_connections": lambda value, label: _check_count(value, label, "api_max_connections"),
    "api_header_timeout": lambda value, label: _check_timeout(value, label, "api_header_timeout"),
    "api_body_timeout": lambda value, label: _check_timeout(value, label, "api_body_timeout"),
    "api_max_header_bytes": lambda value, label: _check_count(value, label, "api_max_header_bytes"),
    "api_max_headers": lambda value, label: _check_count(value, label, "api_max_headers"),
    "metrics_public": lambda value, label: _check_boolean(value, label, "metrics_public"),
    "webhook_rate": lambda value, label: _check_rate(value, label, "webhook_rate"),
    "dag_trigger_rate": lambda value, label: _check_rate(value, label, "dag_trigger_rate"),
    "webhook_replay_window": lambda value, label: _check_seconds(
        value, label, "webhook_replay_window"
    ),
    "ui_session_seconds": lambda value, label: _check_timeout(value, label, "ui_session_seconds"),
    "ui_login_rate": lambda value, label: _check_rate(value, label, "ui_login_rate"),
    "ui_max_streams_per_client": lambda value, label: _check_count(
        value, label, "ui_max_streams_per_client"
    ),
    "max_queued_runs": lambda value, label: _check_count(value, label, "max_queued_runs"),
    "dag_import_timeout": lambda value, label: _check_timeout(value, label, "dag_import_timeout"),
    # Below about 32 MiB the interpreter itself could not start an import.
    "dag_import_max_memory_mb": lambda value, label: _check_megabytes(
        value, label, "dag_import_max_memory_mb", least=32
    ),
    "max_interrupted_tries": lambda value, label: _check_count(
        value, label, "max_interrupted_tries"
    ),
    "alert_channels": check_channels,
    "alerts": check_rules,
    "public_url": _check_public_url,
    "connections_file": lambda value, label: _check_optional_path(value, label, "connections_file"),
}
