"""Settings: one TOML file, environment variables and command-line flags, merged.

Precedence, highest first: flags (`overrides`) > environment > TOML file > defaults. The file
is `config_file` if given, else `$ORCHESTRATOR_CONFIG`, else `orchestrator.toml` in the working
directory if there is one. Relative paths in the file are relative to the file's folder (so a
project can be run from anywhere); relative paths from the environment, flags and defaults are
relative to the working directory. Paths are stored absolute.

```toml
state_dir = ".orchestrator"
dags_folder = "dags"
slots = 4

[pools]
gpu = 1
```

Every bad value is a `ConfigError` that names where it came from (file and key, environment
variable, or flag) and what is allowed, so a typo never silently falls back to a default.
Only the standard library is imported: this runs at the start of every CLI command.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestrator.errors import ConfigError

SYNCHRONOUS_MODES = ("NORMAL", "FULL", "EXTRA")
LOG_FORMATS = ("text", "json")
CONFIG_FILE_NAME = "orchestrator.toml"
CONFIG_ENV_VAR = "ORCHESTRATOR_CONFIG"

#: Turns a setting's key into words naming where its value came from, for error messages:
#: "`slots` in /etc/orchestrator.toml", "ORCHESTRATOR_SLOTS", "--slots".
Label = Callable[[str], str]


def _usable_cpus() -> int:
    """CPUs this process may run on: fewer than `os.cpu_count()` under `taskset` or cpusets."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0)) or 1
    return os.cpu_count() or 1


@dataclass(frozen=True, kw_only=True)
class Settings:
    """Everything the engine and the CLI read from configuration; build it with `load_settings`.

    Constructing it directly (as tests do) checks the values too, and keeps relative paths as
    given.
    """

    state_dir: Path = Path(".orchestrator")
    dags_folder: Path = Path("dags")
    slots: int = field(default_factory=_usable_cpus)  # the "default" pool's slots
    pools: Mapping[str, int] = field(default_factory=dict, hash=False)  # extra pools
    result_max_bytes: int = 65536  # a task result larger than this as JSON is an error
    in_process: bool = False  # run sync tasks in threads of the engine (not worker processes)
    worker_max_tasks: int | None = None  # recycle a worker process after this many tasks
    synchronous: str = "FULL"  # SQLite `PRAGMA synchronous`: NORMAL | FULL | EXTRA
    log_format: str = "text"  # text | json
    triggerer_capacity: int = 200_000  # triggers hosted at once; more wait for a free place
    # The daemon on SIGTERM: seconds running tasks may go on before they are stopped.
    shutdown_grace: float = 30.0
    # Untrusted input (run conf, payloads) may name files only under these folders ...
    allowed_roots: tuple[Path, ...] = ()
    # ... and URLs on loopback, private, link-local or metadata addresses only if this is true.
    allow_private_urls: bool = False
    # Hosts ("host" or "host:port") untrusted URLs may name even when they are private.
    allowed_hosts: tuple[str, ...] = ()
    # The daemon's HTTP API and webhooks: on by default, on loopback only.
    api_enabled: bool = True
    api_host: str = "127.0.0.1"
    api_port: int = 8686  # 0: any free port (the daemon logs and reports the one it got)
    api_max_body: int = 1_048_576  # bytes a request body may have; more is refused (413)
    api_max_json_depth: int = 32  # nesting a JSON body may have; deeper is refused (400)
    # Rate limits (requests per second, with a burst of as many): per webhook, and per DAG
    # for runs started through the API or webhooks. Beyond: 429 with Retry-After.
    webhook_rate: float = 50.0
    dag_trigger_rate: float = 100.0
    # Runs of one DAG waiting to start; an API or webhook trigger beyond it is refused (429).
    max_queued_runs: int = 1000
    config_file: Path | None = None  # the TOML file these settings came from, if any

    def __post_init__(self) -> None:
        for name, check in _CHECKS.items():
            object.__setattr__(self, name, check(getattr(self, name), _argument_label))

    @property
    def logs_dir(self) -> Path:
        """Where task try logs are written."""
        return self.state_dir / "logs"

    def pool_slots(self) -> dict[str, int]:
        """Every pool with its slots; "default" has `slots` unless `pools` sets it."""
        return {"default": self.slots, **self.pools}


def load_settings(
    *,
    config_file: Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> Settings:
    """Read the config file, the environment and the flags into one checked `Settings`.

    `overrides` are the command-line flags, by field name; a `None` value means "flag not
    given". `environ` and `cwd` default to the process's own, and exist so tests need not
    touch either.
    """
    environ = os.environ if environ is None else environ
    cwd = Path.cwd() if cwd is None else Path(os.path.abspath(cwd))
    path = _find_config_file(config_file, environ, cwd)
    values: dict[str, Any] = {"state_dir": cwd / ".orchestrator", "dags_folder": cwd / "dags"}
    if path is not None:
        _merge(values, _read_config_file(path))
    _merge(values, _read_environ(environ, cwd))
    _merge(values, _read_overrides(overrides or {}, cwd))
    return Settings(**values, config_file=path)


# -- finding and reading the sources ------------------------------------------------------------


def _find_config_file(given: Path | None, environ: Mapping[str, str], cwd: Path) -> Path | None:
    """The config file to read: explicit ones must exist, the implicit one may be absent."""
    if given is not None:
        return _existing_file(_absolute(Path(given), cwd), "the config file given")
    if environ.get(CONFIG_ENV_VAR):
        named = _absolute(Path(environ[CONFIG_ENV_VAR]), cwd)
        return _existing_file(named, f"the config file named by {CONFIG_ENV_VAR}")
    implicit = cwd / CONFIG_FILE_NAME
    return implicit if implicit.is_file() else None


def _existing_file(path: Path, what: str) -> Path:
    if not path.is_file():
        problem = "is a folder" if path.is_dir() else "does not exist"
        raise ConfigError(f"{what} ({path}) {problem}; pass the path of a TOML file")
    return path


def _read_config_file(path: Path) -> dict[str, Any]:
    """The checked values of a TOML file, with its relative paths made absolute."""
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path} is not valid TOML: {error}") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"cannot read the config file {path}: {error}") from None
    _reject_unknown_keys(document, path)

    def label(key: str) -> str:
        return f"`{key}` in {path}"

    values = {name: _CHECKS[name](value, label) for name, value in document.items()}
    return _absolute_paths(values, path.parent)


def _reject_unknown_keys(document: Mapping[str, Any], path: Path) -> None:
    """A misspelt key would otherwise be ignored silently, and its default used instead."""
    for key in document:
        if key not in _CHECKS:
            import difflib  # only on this error path: keeps start-up cheap

            close = difflib.get_close_matches(key, _CHECKS, n=1)
            hint = f" (did you mean `{close[0]}`?)" if close else ""
            raise ConfigError(
                f"unknown key `{key}` in {path}{hint}; known keys: {', '.join(sorted(_CHECKS))}"
            )


def _read_environ(environ: Mapping[str, str], cwd: Path) -> dict[str, Any]:
    """The checked values of the `ORCHESTRATOR_*` variables; an empty variable counts as unset."""
    values: dict[str, Any] = {}
    for name, variable in _ENVIRON_VARIABLES.items():
        text = environ.get(variable, "")
        if text.strip():
            value = _from_text(name, text, variable)
            values[name] = _CHECKS[name](value, _constant_label(variable))
    return _absolute_paths(values, cwd)


def _read_overrides(overrides: Mapping[str, Any], cwd: Path) -> dict[str, Any]:
    """The checked values of the command-line flags that were given."""
    values: dict[str, Any] = {}
    for name, value in overrides.items():
        if name not in _CHECKS:
            raise ConfigError(
                f"unknown setting {name!r} given as a flag; known: {', '.join(sorted(_CHECKS))}"
            )
        if value is None:
            continue
        if isinstance(value, str):
            value = _from_text(name, value, _flag_label(name))
        values[name] = _CHECKS[name](value, _flag_label)
    return _absolute_paths(values, cwd)


def _argument_label(key: str) -> str:
    return f"Settings({key}=...)"


def _constant_label(text: str) -> Label:
    """An environment variable sets one setting, so its name is the whole label."""
    return lambda key: text


def _flag_label(key: str) -> str:
    if key.startswith("pools."):
        return f"the slots of pool {key.removeprefix('pools.')!r} given by --pool"
    return f"--{key.replace('_', '-')}"


def _merge(into: dict[str, Any], values: Mapping[str, Any]) -> None:
    """Later sources win per setting; pools are merged pool by pool."""
    for name, value in values.items():
        into[name] = {**into.get(name, {}), **value} if name == "pools" else value


def _absolute(path: Path, base: Path) -> Path:
    return Path(os.path.abspath(base / path.expanduser()))


def _absolute_paths(values: dict[str, Any], base: Path) -> dict[str, Any]:
    for name in ("state_dir", "dags_folder"):
        if name in values:
            values[name] = _absolute(values[name], base)
    if "allowed_roots" in values:
        values["allowed_roots"] = tuple(_absolute(root, base) for root in values["allowed_roots"])
    return values


# -- checking one value -------------------------------------------------------------------------


def _from_text(name: str, text: str, label: str) -> Any:
    """An environment variable's or flag's text as the setting's type."""
    text = text.strip()
    if name in _WHOLE_NUMBERS:
        try:
            return int(text)
        except ValueError:
            raise ConfigError(f"{label} must be a whole number, got {text!r}") from None
    if name in ("shutdown_grace", "webhook_rate", "dag_trigger_rate"):
        try:
            return float(text)
        except ValueError:
            raise ConfigError(f"{label} must be a number, got {text!r}") from None
    if name in ("in_process", "allow_private_urls", "api_enabled"):
        return _boolean_from_text(text, label)
    if name == "allowed_roots":
        return [part for part in text.split(os.pathsep) if part.strip()]
    if name == "allowed_hosts":  # commas: IPv6 hosts contain colons
        return [part.strip() for part in text.split(",") if part.strip()]
    return text


_WHOLE_NUMBERS = (
    "slots",
    "result_max_bytes",
    "worker_max_tasks",
    "triggerer_capacity",
    "api_port",
    "api_max_body",
    "api_max_json_depth",
    "max_queued_runs",
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


def _check_seconds(value: Any, label: Label, key: str) -> float:
    if not isinstance(value, int | float) or isinstance(value, bool) or not 0 <= value < 1e6:
        raise ConfigError(f"{label(key)} must be a number of seconds from 0, got {value!r}")
    return float(value)


def _check_rate(value: Any, label: Label, key: str) -> float:
    if not isinstance(value, int | float) or isinstance(value, bool) or not 0 < value < 1e9:
        raise ConfigError(
            f"{label(key)} must be a number of requests per second above 0, got {value!r}"
        )
    return float(value)


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


_CHECKS: dict[str, Callable[[Any, Label], Any]] = {
    "state_dir": lambda value, label: _check_path(value, label, "state_dir"),
    "dags_folder": lambda value, label: _check_path(value, label, "dags_folder"),
    "slots": lambda value, label: _check_count(value, label, "slots"),
    "pools": _check_pools,
    "result_max_bytes": lambda value, label: _check_count(value, label, "result_max_bytes"),
    "in_process": lambda value, label: _check_boolean(value, label, "in_process"),
    "worker_max_tasks": _check_worker_max_tasks,
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
    "webhook_rate": lambda value, label: _check_rate(value, label, "webhook_rate"),
    "dag_trigger_rate": lambda value, label: _check_rate(value, label, "dag_trigger_rate"),
    "max_queued_runs": lambda value, label: _check_count(value, label, "max_queued_runs"),
}

_ENVIRON_VARIABLES = {
    name: f"ORCHESTRATOR_{name.upper()}"
    for name in (
        "state_dir",
        "dags_folder",
        "slots",
        "result_max_bytes",
        "in_process",
        "worker_max_tasks",
        "synchronous",
        "log_format",
        "triggerer_capacity",
        "shutdown_grace",
        "allowed_roots",
        "allow_private_urls",
        "allowed_hosts",
        "api_enabled",
        "api_host",
        "api_port",
        "api_max_body",
        "api_max_json_depth",
        "webhook_rate",
        "dag_trigger_rate",
        "max_queued_runs",
    )
}
