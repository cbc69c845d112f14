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

Every value is checked by `orchestrator.settingchecks`, with a label naming where it came from
(file and key, environment variable, or flag). Only the standard library is imported: this runs
at the start of every CLI command.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestrator.alertconfig import AlertRule, ChannelConfig, check_rule_channels, entry_line
from orchestrator.errors import ConfigError
from orchestrator.settingchecks import CHECKS, Label, from_text

CONFIG_FILE_NAME = "orchestrator.toml"
CONFIG_ENV_VAR = "ORCHESTRATOR_CONFIG"


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
    # A try's log larger than this keeps its head and tail, with a marker where it was cut.
    task_log_max_bytes: int = 16 * 1024 * 1024
    in_process: bool = False  # run sync tasks in threads of the engine (not worker processes)
    worker_max_tasks: int | None = None  # recycle a worker process after this many tasks
    # Where sync tasks run: "local" worker processes, or "dask" workers (`dask_address`, or a
    # LocalCluster sized to the machine when it is unset). Async tasks stay in the daemon.
    executor: str = "local"
    dask_address: str | None = None  # the Dask scheduler, such as tcp://10.0.0.5:8786
    synchronous: str = "FULL"  # SQLite `PRAGMA synchronous`: NORMAL | FULL | EXTRA
    log_format: str = "text"  # text | json
    triggerer_capacity: int = 200_000  # triggers hosted at once; more wait for a free place
    # The daemon on SIGTERM: seconds running tasks may go on before they are stopped.
    shutdown_grace: float = 30.0
    # Tries of one task instance cut short by the daemon's death (kill -9, OOM, power cut) are
    # run again without using a retry, this many times; then the task counts as the cause.
    max_interrupted_tries: int = 3
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
    # Connections held at once (at most half the open-file limit); beyond: 503 and closed.
    api_max_connections: int = 1000
    # Seconds a request's head (line and headers) and then its body may take to arrive (408).
    api_header_timeout: float = 10.0
    api_body_timeout: float = 30.0
    api_max_header_bytes: int = 16384  # a request's line and headers; more is refused (431)
    api_max_headers: int = 100  # headers a request may have; more is refused (431)
    # `/metrics` without a token, for a Prometheus on the same host (the API is on loopback).
    metrics_public: bool = False
    # Rate limits (requests per second, with a burst of as many): per webhook, and per DAG
    # for runs started through the API or webhooks. Beyond: 429 with Retry-After.
    webhook_rate: float = 50.0
    dag_trigger_rate: float = 100.0
    # Seconds within which the same signed body to a GitHub or plain-HMAC webhook is a replay
    # and gets the first delivery's run, whatever delivery id it carries; 0: no such check.
    webhook_replay_window: float = 600.0
    # The web UI (served with the API): how long a sign-in lasts, failed sign-ins a second
    # per client address, and live-update streams one client may hold open at once.
    ui_session_seconds: float = 43200.0
    ui_login_rate: float = 0.5
    ui_max_streams_per_client: int = 8
    # Runs of one DAG waiting to start; an API or webhook trigger beyond it is refused (429).
    max_queued_runs: int = 1000
    # Each DAG file is first imported in a short-lived subprocess under these limits, so a file
    # that loops, sleeps, exits, forks or allocates at import is an error, not a wedged daemon.
    dag_import_timeout: float = 30.0
    dag_import_max_memory_mb: int = 1024
    # Alerts: channels by name, and rules sending events to them (see `alertconfig`); the
    # daemon's address as users reach it (behind a proxy), for the links in alerts.
    alert_channels: Mapping[str, ChannelConfig] = field(default_factory=dict, hash=False)
    alerts: tuple[AlertRule, ...] = ()
    public_url: str | None = None
    # Airflow connections for `BaseHook.get_connection`, after AIRFLOW_CONN_*: a JSON file of
    # conn_id to a URI or an object of fields (Airflow's local-filesystem secrets backend).
    connections_file: Path | None = None
    config_file: Path | None = None  # the TOML file these settings came from, if any

    def __post_init__(self) -> None:
        for name, check in CHECKS.items():
            object.__setattr__(self, name, check(getattr(self, name), _argument_label))
        check_rule_channels(self.alerts, self.alert_channels, _argument_label)

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

    text = path.read_text(encoding="utf-8")

    def label(key: str) -> str:
        if key.startswith("alerts["):  # `[[alerts]]` entries have no key: name the line
            index = int(key[len("alerts[") : -1])
            line = entry_line(text, "alerts", index)
            return f"[[alerts]] entry {index + 1} ({path}, line {line})"
        return f"`{key}` in {path}"

    values = {name: CHECKS[name](value, label) for name, value in document.items()}
    check_rule_channels(values.get("alerts", ()), values.get("alert_channels", {}), label)
    return _check_files(_absolute_paths(values, path.parent), label)


def _reject_unknown_keys(document: Mapping[str, Any], path: Path) -> None:
    """A misspelt key would otherwise be ignored silently, and its default used instead."""
    for key in document:
        if key not in CHECKS:
            import difflib  # only on this error path: keeps start-up cheap

            close = difflib.get_close_matches(key, CHECKS, n=1)
            hint = f" (did you mean `{close[0]}`?)" if close else ""
            raise ConfigError(
                f"unknown key `{key}` in {path}{hint}; known keys: {', '.join(sorted(CHECKS))}"
            )


def _read_environ(environ: Mapping[str, str], cwd: Path) -> dict[str, Any]:
    """The checked values of the `ORCHESTRATOR_*` variables; an empty variable counts as unset."""
    values: dict[str, Any] = {}
    for name, variable in _ENVIRON_VARIABLES.items():
        text = environ.get(variable, "")
        if text.strip():
            value = from_text(name, text, variable)
            values[name] = CHECKS[name](value, _constant_label(variable))
    return _check_files(_absolute_paths(values, cwd), _ENVIRON_VARIABLES.__getitem__)


# Every setting but the tables (pools, alerts): they have no one-line form, so live in the file.
_TABLES = ("pools", "alerts", "alert_channels")
_ENVIRON_VARIABLES = {
    name: f"ORCHESTRATOR_{name.upper()}" for name in CHECKS if name not in _TABLES
}


def _read_overrides(overrides: Mapping[str, Any], cwd: Path) -> dict[str, Any]:
    """The checked values of the command-line flags that were given."""
    values: dict[str, Any] = {}
    for name, value in overrides.items():
        if name not in CHECKS:
            raise ConfigError(
                f"unknown setting {name!r} given as a flag; known: {', '.join(sorted(CHECKS))}"
            )
        if value is None:
            continue
        if isinstance(value, str):
            value = from_text(name, value, _flag_label(name))
        values[name] = CHECKS[name](value, _flag_label)
    return _check_files(_absolute_paths(values, cwd), _flag_label)


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
    for name in ("state_dir", "dags_folder", "connections_file"):
        if values.get(name) is not None:
            values[name] = _absolute(values[name], base)
    if "allowed_roots" in values:
        values["allowed_roots"] = tuple(_absolute(root, base) for root in values["allowed_roots"])
    return values


def _check_files(values: dict[str, Any], label: Label) -> dict[str, Any]:
    """Files a setting names must exist once made absolute (folders are created when used)."""
    path = values.get("connections_file")
    if path is not None and not path.is_file():
        problem = "is a folder" if path.is_dir() else "does not exist"
        raise ConfigError(
            f"{label('connections_file')} names {path}, which {problem}; "
            "it must be a JSON file of connections"
        )
    return values
