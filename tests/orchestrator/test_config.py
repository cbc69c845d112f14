"""Settings from defaults, a TOML file, the environment and flags; every bad value named."""

from __future__ import annotations

import ast
import dataclasses
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import orchestrator.alertconfig
import orchestrator.config
import orchestrator.settingchecks
from orchestrator.config import Settings, load_settings
from orchestrator.errors import ConfigError


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def _load(cwd: Path, environ: dict[str, str] | None = None, **kwargs: Any) -> Settings:
    return load_settings(environ=environ or {}, cwd=cwd, **kwargs)


# -- defaults and the config file ---------------------------------------------------------------


def test_defaults_live_under_the_working_directory(tmp_path: Path) -> None:
    settings = _load(tmp_path)
    assert settings.state_dir == tmp_path / ".orchestrator"
    assert settings.dags_folder == tmp_path / "dags"
    assert settings.logs_dir == tmp_path / ".orchestrator" / "logs"
    assert settings.slots >= 1
    assert settings.pools == {}
    assert settings.pool_slots() == {"default": settings.slots}
    assert settings.result_max_bytes == 65536
    assert settings.in_process is False
    assert settings.worker_max_tasks is None
    assert settings.synchronous == "FULL"
    assert settings.log_format == "text"
    assert settings.config_file is None


def test_orchestrator_toml_in_the_working_directory_is_read(tmp_path: Path) -> None:
    config = _write(
        tmp_path / "orchestrator.toml",
        'state_dir = "state"\nslots = 3\nsynchronous = "NORMAL"\n[pools]\ngpu = 1\n',
    )
    settings = _load(tmp_path)
    assert settings.config_file == config
    assert settings.state_dir == tmp_path / "state"
    assert settings.slots == 3
    assert settings.synchronous == "NORMAL"
    assert settings.pool_slots() == {"default": 3, "gpu": 1}


def test_every_setting_can_come_from_the_file(tmp_path: Path) -> None:
    _write(
        tmp_path / "orchestrator.toml",
        """
        state_dir = "/srv/orchestrator/state"
        dags_folder = "pipelines"
        slots = 6
        result_max_bytes = 1024
        in_process = true
        worker_max_tasks = 50
        synchronous = "extra"
        log_format = "JSON"

        [pools]
        default = 4
        gpu = 2
        """.replace("\n        ", "\n"),
    )
    settings = _load(tmp_path)
    assert settings == Settings(
        state_dir=Path("/srv/orchestrator/state"),
        dags_folder=tmp_path / "pipelines",
        slots=6,
        pools={"default": 4, "gpu": 2},
        result_max_bytes=1024,
        in_process=True,
        worker_max_tasks=50,
        synchronous="EXTRA",
        log_format="json",
        config_file=tmp_path / "orchestrator.toml",
    )
    assert settings.pool_slots() == {"default": 4, "gpu": 2}  # the pool table wins over slots


def test_relative_paths_in_the_file_are_relative_to_the_file(tmp_path: Path) -> None:
    config = _write(tmp_path / "project" / "deploy.toml", 'dags_folder = "../dags"\n')
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    settings = _load(elsewhere, config_file=config)
    assert settings.dags_folder == tmp_path / "dags"  # normalised, no ".."
    assert settings.state_dir == elsewhere / ".orchestrator"  # a default: the working dir


def test_orchestrator_config_names_the_file_relative_to_the_working_directory(
    tmp_path: Path,
) -> None:
    _write(tmp_path / "conf" / "o.toml", "slots = 2\n")
    _write(tmp_path / "orchestrator.toml", "slots = 9\n")  # not read: the variable wins
    settings = _load(tmp_path, {"ORCHESTRATOR_CONFIG": "conf/o.toml"})
    assert settings.slots == 2
    assert settings.config_file == tmp_path / "conf" / "o.toml"


def test_an_explicit_config_file_beats_the_environment(tmp_path: Path) -> None:
    given = _write(tmp_path / "given.toml", "slots = 5\n")
    settings = _load(tmp_path, {"ORCHESTRATOR_CONFIG": "missing.toml"}, config_file=given)
    assert settings.slots == 5


def test_a_named_config_file_must_exist(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"config file given \(.*nope\.toml\) does not exist"):
        _load(tmp_path, config_file=Path("nope.toml"))
    with pytest.raises(ConfigError, match=r"named by ORCHESTRATOR_CONFIG .* does not exist"):
        _load(tmp_path, {"ORCHESTRATOR_CONFIG": "nope.toml"})
    with pytest.raises(ConfigError, match="is a folder"):
        _load(tmp_path, config_file=tmp_path)


def test_invalid_toml_says_where(tmp_path: Path) -> None:
    config = _write(tmp_path / "orchestrator.toml", "slots = 2\nstate_dir = = 'x'\n")
    with pytest.raises(ConfigError) as caught:
        _load(tmp_path)
    message = str(caught.value)
    assert f"{config} is not valid TOML" in message
    assert "line 2" in message


def test_a_file_that_is_not_utf8_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "orchestrator.toml").write_bytes(b"slots = 2 # \xff\n")
    with pytest.raises(ConfigError, match="cannot read the config file"):
        _load(tmp_path)


def test_an_unknown_key_is_named_with_a_suggestion(tmp_path: Path) -> None:
    config = _write(tmp_path / "orchestrator.toml", "slot = 4\n")
    with pytest.raises(ConfigError) as caught:
        _load(tmp_path)
    message = str(caught.value)
    assert f"unknown key `slot` in {config}" in message
    assert "did you mean `slots`?" in message
    assert "known keys: alert_channels, alerts, allow_private_urls, allowed_hosts" in message


def test_an_unknown_table_is_an_unknown_key(tmp_path: Path) -> None:
    _write(tmp_path / "orchestrator.toml", "[scheduler]\ninterval = 1\n")
    with pytest.raises(ConfigError, match="unknown key `scheduler`"):
        _load(tmp_path)


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ("slots = 0", "`slots` in .* must be a whole number of 1 or more, got 0"),
        ("slots = '4'", "`slots` in .* must be a whole number of 1 or more, got '4'"),
        ("slots = true", "`slots` in .* got True"),
        ("slots = 2.5", "`slots` in .* got 2.5"),
        ("result_max_bytes = 0", "`result_max_bytes` in .* 1 or more"),
        (
            "worker_max_tasks = 0",
            r"`worker_max_tasks` .* got 0 \(leave it out to never recycle workers\)",
        ),
        ("in_process = 'yes'", "`in_process` in .* must be true or false, got 'yes'"),
        ("synchronous = 'OFF'", "`synchronous` in .* one of NORMAL, FULL, EXTRA, got 'OFF'"),
        ("synchronous = 1", "`synchronous` in .* got 1"),
        ("log_format = 'xml'", "`log_format` in .* one of text, json, got 'xml'"),
        ("state_dir = 3", "`state_dir` in .* non-empty path string, got 3"),
        ("dags_folder = ''", "`dags_folder` in .* non-empty path string"),
        ("pools = 3", r"`pools` in .* must be a table .*\[pools\]"),
        ("[pools]\ngpu = 0", "`pools.gpu` in .* 1 or more, got 0"),
        ("[pools]\ngpu = 'two'", "`pools.gpu` in .* got 'two'"),
        ("[pools]\n' ' = 2", "`pools` in .* has a pool without a name: ' '"),
    ],
)
def test_a_bad_value_in_the_file_names_file_key_and_what_is_allowed(
    tmp_path: Path, toml: str, message: str
) -> None:
    config = _write(tmp_path / "orchestrator.toml", toml + "\n")
    with pytest.raises(ConfigError, match=message) as caught:
        _load(tmp_path)
    assert str(config) in str(caught.value)


# -- the environment ----------------------------------------------------------------------------


def test_the_environment_beats_the_file(tmp_path: Path) -> None:
    _write(tmp_path / "orchestrator.toml", 'slots = 2\nlog_format = "json"\n')
    environ = {
        "ORCHESTRATOR_SLOTS": " 7 ",
        "ORCHESTRATOR_STATE_DIR": "var/state",
        "ORCHESTRATOR_DAGS_FOLDER": "/abs/dags",
        "ORCHESTRATOR_RESULT_MAX_BYTES": "100",
        "ORCHESTRATOR_IN_PROCESS": "yes",
        "ORCHESTRATOR_WORKER_MAX_TASKS": "10",
        "ORCHESTRATOR_SYNCHRONOUS": "normal",
    }
    settings = _load(tmp_path, environ)
    assert settings.slots == 7
    assert settings.state_dir == tmp_path / "var" / "state"  # relative to the working dir
    assert settings.dags_folder == Path("/abs/dags")
    assert settings.result_max_bytes == 100
    assert settings.in_process is True
    assert settings.worker_max_tasks == 10
    assert settings.synchronous == "NORMAL"
    assert settings.log_format == "json"  # not in the environment: the file's value stays


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1", True),
        ("true", True),
        ("YES", True),
        ("on", True),
        ("0", False),
        ("false", False),
        ("No", False),
        ("off", False),
    ],
)
def test_in_process_from_the_environment(tmp_path: Path, text: str, expected: bool) -> None:
    assert _load(tmp_path, {"ORCHESTRATOR_IN_PROCESS": text}).in_process is expected


def test_an_empty_variable_counts_as_unset(tmp_path: Path) -> None:
    _write(tmp_path / "orchestrator.toml", "slots = 2\n")
    assert _load(tmp_path, {"ORCHESTRATOR_SLOTS": "", "ORCHESTRATOR_CONFIG": ""}).slots == 2


def test_unrelated_orchestrator_variables_are_ignored(tmp_path: Path) -> None:
    # Task subprocesses see ORCHESTRATOR_DAG_ID and friends: they must not break a CLI they run.
    assert _load(tmp_path, {"ORCHESTRATOR_DAG_ID": "etl", "ORCHESTRATOR_SLOT": "x"}).slots >= 1


def test_connection_limits_come_from_the_environment(tmp_path: Path) -> None:
    settings = _load(
        tmp_path,
        {
            "ORCHESTRATOR_API_MAX_CONNECTIONS": "50",
            "ORCHESTRATOR_API_HEADER_TIMEOUT": "2.5",
            "ORCHESTRATOR_API_BODY_TIMEOUT": "7",
            "ORCHESTRATOR_API_MAX_HEADER_BYTES": "8192",
            "ORCHESTRATOR_API_MAX_HEADERS": "40",
        },
    )
    limits = (settings.api_max_connections, settings.api_header_timeout, settings.api_body_timeout)
    assert limits == (50, 2.5, 7.0)
    assert (settings.api_max_header_bytes, settings.api_max_headers) == (8192, 40)


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("ORCHESTRATOR_SLOTS", "four", "ORCHESTRATOR_SLOTS must be a whole number, got 'four'"),
        ("ORCHESTRATOR_SLOTS", "0", "ORCHESTRATOR_SLOTS must be a whole number of 1 or more"),
        ("ORCHESTRATOR_RESULT_MAX_BYTES", "-5", "ORCHESTRATOR_RESULT_MAX_BYTES must be .* got -5"),
        ("ORCHESTRATOR_IN_PROCESS", "maybe", "ORCHESTRATOR_IN_PROCESS must be true or false"),
        ("ORCHESTRATOR_SYNCHRONOUS", "OFF", "ORCHESTRATOR_SYNCHRONOUS must be one of NORMAL"),
        ("ORCHESTRATOR_LOG_FORMAT", "xml", "ORCHESTRATOR_LOG_FORMAT must be one of text, json"),
        ("ORCHESTRATOR_WORKER_MAX_TASKS", "0", "ORCHESTRATOR_WORKER_MAX_TASKS must be"),
        (
            "ORCHESTRATOR_API_HEADER_TIMEOUT",
            "0",
            "ORCHESTRATOR_API_HEADER_TIMEOUT must be .* above",
        ),
        ("ORCHESTRATOR_API_MAX_CONNECTIONS", "0", "ORCHESTRATOR_API_MAX_CONNECTIONS must be"),
    ],
)
def test_a_bad_variable_is_named(tmp_path: Path, variable: str, value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        _load(tmp_path, {variable: value})


def test_the_process_environment_is_the_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ORCHESTRATOR_SLOTS", "11")
    monkeypatch.chdir(tmp_path)
    settings = load_settings()
    assert settings.slots == 11
    assert settings.state_dir == tmp_path.resolve() / ".orchestrator"


# -- flags --------------------------------------------------------------------------------------


def test_flags_beat_everything_and_none_means_not_given(tmp_path: Path) -> None:
    _write(tmp_path / "orchestrator.toml", "slots = 2\nresult_max_bytes = 10\n")
    settings = _load(
        tmp_path,
        {"ORCHESTRATOR_SLOTS": "3", "ORCHESTRATOR_LOG_FORMAT": "json"},
        overrides={"slots": 4, "log_format": None, "dags_folder": "here", "in_process": True},
    )
    assert settings.slots == 4
    assert settings.log_format == "json"  # the flag was not given
    assert settings.result_max_bytes == 10
    assert settings.dags_folder == tmp_path / "here"
    assert settings.in_process is True


def test_flag_pools_add_to_the_file_pools(tmp_path: Path) -> None:
    _write(tmp_path / "orchestrator.toml", "[pools]\ngpu = 1\nio = 4\n")
    settings = _load(tmp_path, overrides={"pools": {"gpu": 2}})
    assert settings.pools == {"gpu": 2, "io": 4}


def test_flag_text_is_parsed_like_the_environment(tmp_path: Path) -> None:
    settings = _load(tmp_path, overrides={"slots": "5", "in_process": "false"})
    assert (settings.slots, settings.in_process) == (5, False)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"slots": 0}, "--slots must be a whole number of 1 or more, got 0"),
        ({"slots": "many"}, "--slots must be a whole number, got 'many'"),
        ({"log_format": "xml"}, "--log-format must be one of text, json"),
        ({"pools": {"gpu": 0}}, "the slots of pool 'gpu' given by --pool must be"),
        (
            {"slotz": 3},
            "unknown setting 'slotz' given as a flag; known: alert_channels, alerts, allow_",
        ),
    ],
)
def test_a_bad_flag_is_named(tmp_path: Path, overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        _load(tmp_path, overrides=overrides)


# -- Settings itself ----------------------------------------------------------------------------


def test_settings_built_directly_are_checked_too() -> None:
    with pytest.raises(ConfigError, match=r"Settings\(slots=...\) must be a whole number"):
        Settings(slots=0)
    with pytest.raises(ConfigError, match="synchronous"):
        Settings(synchronous="sometimes")
    with pytest.raises(ConfigError, match=r"Settings\(pools.gpu=...\)"):
        Settings(pools={"gpu": -1})


def test_settings_normalise_what_they_are_given(tmp_path: Path) -> None:
    pools = {"gpu": 1}
    settings = Settings(state_dir=str(tmp_path), synchronous="normal", pools=pools)  # type: ignore[arg-type]
    pools["gpu"] = 99  # the caller's dict is copied, not shared
    assert settings.state_dir == tmp_path
    assert settings.synchronous == "NORMAL"
    assert settings.pool_slots()["gpu"] == 1


def test_settings_are_frozen_and_hashable() -> None:
    settings = Settings(slots=2)
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.slots = 3  # type: ignore[misc]
    assert hash(settings) == hash(Settings(slots=2))


def test_every_setting_but_config_file_has_a_check_and_a_toml_key() -> None:
    names = {field.name for field in dataclasses.fields(Settings)} - {"config_file"}
    assert set(orchestrator.settingchecks.CHECKS) == names


@pytest.mark.parametrize(
    "module", [orchestrator.config, orchestrator.settingchecks, orchestrator.alertconfig]
)
def test_the_module_imports_only_the_standard_library(module: ModuleType) -> None:
    """Every CLI command loads settings first: a heavy import here slows all of them."""
    tree = ast.parse(Path(module.__file__ or "").read_text(encoding="utf-8"))
    imported: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module)
    third_party = {
        name
        for name in imported
        if name.split(".")[0] not in sys.stdlib_module_names
        and name
        not in ("orchestrator.errors", "orchestrator.settingchecks", "orchestrator.alertconfig")
    }
    assert third_party == set()


def test_the_input_policy_settings_come_from_file_and_environment(tmp_path: Path) -> None:
    _write(
        tmp_path / "orchestrator.toml",
        'allowed_roots = ["data", "/srv/shared"]\nallowed_hosts = ["models.internal:8080"]\n',
    )
    settings = load_settings(
        cwd=tmp_path,
        environ={
            "ORCHESTRATOR_ALLOW_PRIVATE_URLS": "yes",
            "ORCHESTRATOR_ALLOWED_HOSTS": "a, [::1]:9",
        },
    )
    assert settings.allowed_roots == (tmp_path / "data", Path("/srv/shared"))
    assert settings.allowed_hosts == ("a", "[::1]:9")
    assert settings.allow_private_urls is True


@pytest.mark.parametrize(
    ("document", "error"),
    [
        ('allowed_roots = "data"\n', "must be a list of folders"),
        ("allowed_hosts = [1]\n", "must be a list of host names"),
        ('allow_private_urls = "yes"\n', "must be true or false"),
    ],
)
def test_bad_input_policy_settings_are_named(tmp_path: Path, document: str, error: str) -> None:
    _write(tmp_path / "orchestrator.toml", document)
    with pytest.raises(ConfigError, match=error):
        load_settings(cwd=tmp_path, environ={})


def test_task_log_max_bytes_has_a_floor(tmp_path: Path) -> None:
    with pytest.raises(
        ConfigError, match=r"task_log_max_bytes=...\) must be 4096 or more, got 100"
    ):
        Settings(task_log_max_bytes=100)
    assert Settings(task_log_max_bytes=4096).task_log_max_bytes == 4096


def test_the_connections_file_is_relative_to_the_config_file(tmp_path: Path) -> None:
    _write(tmp_path / "project" / "secrets" / "connections.json", "{}")
    config = _write(
        tmp_path / "project" / "deploy.toml", 'connections_file = "secrets/connections.json"\n'
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    settings = _load(elsewhere, config_file=config)
    assert settings.connections_file == tmp_path / "project" / "secrets" / "connections.json"
    from_environ = _load(
        tmp_path / "project", {"ORCHESTRATOR_CONNECTIONS_FILE": "secrets/connections.json"}
    )
    assert from_environ.connections_file == settings.connections_file
    assert _load(elsewhere).connections_file is None


@pytest.mark.parametrize(
    ("where", "problem"), [("missing.json", "does not exist"), ("folder", "is a folder")]
)
def test_the_connections_file_must_be_a_file(tmp_path: Path, where: str, problem: str) -> None:
    (tmp_path / "folder").mkdir()
    _write(tmp_path / "orchestrator.toml", f'connections_file = "{where}"\n')
    with pytest.raises(ConfigError, match=f"`connections_file` in .*orchestrator.toml.*{problem}"):
        _load(tmp_path)
    with pytest.raises(ConfigError, match=f"^ORCHESTRATOR_CONNECTIONS_FILE names .*{problem}"):
        _load(tmp_path / "folder", {"ORCHESTRATOR_CONNECTIONS_FILE": f"../{where}"})
