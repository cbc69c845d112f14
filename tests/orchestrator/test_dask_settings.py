"""The `executor` and `dask_address` settings, and `orchestrator daemon --executor/--dask-address`.

A bad value is a clear error naming the setting and where it came from, never a daemon that
hangs trying to reach a scheduler that cannot exist. No Dask here: the daemon's serve loop is
replaced, so the command stops once its settings are made.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from orchestrator.cli.app import cli
from orchestrator.config import Settings, load_settings
from orchestrator.errors import ConfigError


def _load(tmp_path: Path, environ: dict[str, str] | None = None, **overrides: Any) -> Settings:
    return load_settings(environ=environ or {}, cwd=tmp_path, overrides=overrides)


def test_the_executor_is_local_by_default_and_dask_when_asked(tmp_path: Path) -> None:
    assert _load(tmp_path).executor == "local" and _load(tmp_path).dask_address is None
    (tmp_path / "orchestrator.toml").write_text('executor = "dask"\n')
    assert _load(tmp_path).executor == "dask"
    assert _load(tmp_path, {"ORCHESTRATOR_EXECUTOR": "local"}).executor == "local"


def test_an_unknown_executor_names_the_choices(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="ORCHESTRATOR_EXECUTOR") as caught:
        _load(tmp_path, {"ORCHESTRATOR_EXECUTOR": "kubernetes"})
    assert "local" in str(caught.value) and "dask" in str(caught.value)


@pytest.mark.parametrize(
    ("given", "kept"),
    [
        ("tcp://10.0.0.5:8786", "tcp://10.0.0.5:8786"),
        ("  tls://scheduler.internal:8786 ", "tls://scheduler.internal:8786"),
        ("inproc://10.0.0.5/1234/1", "inproc://10.0.0.5/1234/1"),
    ],
)
def test_a_dask_address_with_a_scheme_is_kept(tmp_path: Path, given: str, kept: str) -> None:
    assert _load(tmp_path, {"ORCHESTRATOR_DASK_ADDRESS": given}).dask_address == kept


@pytest.mark.parametrize(
    "given", ["10.0.0.5:8786", "tcp://", "http://10.0.0.5:8786", "tcp://10.0.0.5 :8786"]
)
def test_a_dask_address_that_cannot_be_a_scheduler_is_refused(tmp_path: Path, given: str) -> None:
    with pytest.raises(ConfigError, match="must be a Dask scheduler's address") as caught:
        _load(tmp_path, {"ORCHESTRATOR_DASK_ADDRESS": given})
    assert "ORCHESTRATOR_DASK_ADDRESS" in str(caught.value) and "tcp://127.0.0.1:8786" in str(
        caught.value
    )


def test_a_dask_address_in_the_file_that_is_not_text_is_refused(tmp_path: Path) -> None:
    (tmp_path / "orchestrator.toml").write_text("dask_address = 8786\n")
    with pytest.raises(ConfigError, match=r"dask_address.*must be a Dask scheduler's address"):
        _load(tmp_path)


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[Settings]:
    """What `orchestrator daemon` would serve with: its settings, instead of a daemon."""
    import orchestrator.daemon.lifecycle
    import orchestrator.daemon.log_setup

    seen: list[Settings] = []

    async def serve(settings: Settings) -> None:
        seen.append(settings)

    monkeypatch.setattr(orchestrator.daemon.lifecycle, "serve", serve)
    monkeypatch.setattr(orchestrator.daemon.log_setup, "configure_logging", lambda _: None)
    monkeypatch.chdir(tmp_path)
    for name in ("ORCHESTRATOR_EXECUTOR", "ORCHESTRATOR_DASK_ADDRESS", "ORCHESTRATOR_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    return seen


def _daemon(*args: str) -> Any:
    return CliRunner().invoke(cli, ["daemon", *args], prog_name="orchestrator")


def test_daemon_dask_address_implies_the_dask_executor(served: list[Settings]) -> None:
    result = _daemon("--dask-address", "tcp://127.0.0.1:8786")
    assert result.exit_code == 0, result.output
    assert (served[0].executor, served[0].dask_address) == ("dask", "tcp://127.0.0.1:8786")


def test_daemon_executor_dask_alone_means_a_local_cluster(served: list[Settings]) -> None:
    result = _daemon("--executor", "dask")
    assert result.exit_code == 0, result.output
    assert (served[0].executor, served[0].dask_address) == ("dask", None)


def test_daemon_refuses_a_bad_executor_or_address_before_starting(
    served: list[Settings],
) -> None:
    unknown = _daemon("--executor", "kubernetes")
    assert unknown.exit_code != 0 and "kubernetes" in unknown.output
    bad = _daemon("--dask-address", "10.0.0.5:8786")
    assert bad.exit_code != 0 and "must be a Dask scheduler's address" in bad.output
    assert served == []
