"""The options every command shares: where the state, the DAGs and the config file are.

They are accepted before the command (`orchestrator --state-dir X runs list`) and after it
(`orchestrator runs list --state-dir X`), because people type them in both places; the value
nearest the command wins. The values are kept in the root context's `meta` so commands do not
each have to pass them along.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

if TYPE_CHECKING:
    from orchestrator.config import Settings

_META_KEY = "orchestrator.settings_options"

Command = TypeVar("Command", bound=Callable[..., Any])


def _remember(context: click.Context, parameter: click.Parameter, value: Any) -> None:
    """Record an option's value on the root context, where `load_cli_settings` finds it."""
    if value is not None and parameter.name is not None:
        context.find_root().meta.setdefault(_META_KEY, {})[parameter.name] = value


_SETTINGS_OPTIONS = (
    click.option(
        "--state-dir",
        type=click.Path(file_okay=False, path_type=Path),
        expose_value=False,
        callback=_remember,
        help="Folder of the database and the task logs "
        "[env ORCHESTRATOR_STATE_DIR; default .orchestrator].",
    ),
    click.option(
        "--dags-folder",
        type=click.Path(file_okay=False, path_type=Path),
        expose_value=False,
        callback=_remember,
        help="Folder of the DAG files [env ORCHESTRATOR_DAGS_FOLDER; default dags].",
    ),
    click.option(
        "--config",
        "config_file",
        type=click.Path(dir_okay=False, path_type=Path),
        expose_value=False,
        callback=_remember,
        help="The TOML config file [env ORCHESTRATOR_CONFIG; default ./orchestrator.toml].",
    ),
)


def settings_options(command: Command) -> Command:
    """Add `--state-dir`, `--dags-folder` and `--config` to a command or group."""
    for option in reversed(_SETTINGS_OPTIONS):
        command = option(command)
    return command


def load_cli_settings(**overrides: Any) -> Settings:
    """The settings for this invocation: the shared options, plus a command's own `overrides`.

    `None` values mean "not given on the command line", so the config file, the environment
    or the default decides. Raises `ConfigError` for a bad value from any of them.
    """
    from orchestrator.config import load_settings

    given = dict(click.get_current_context().find_root().meta.get(_META_KEY, {}))
    config_file = given.pop("config_file", None)
    return load_settings(config_file=config_file, overrides={**given, **overrides})
