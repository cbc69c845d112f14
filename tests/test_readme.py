"""The README's snippets do what it says: the first pipeline, its commands, the config."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.config import load_settings

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()
pytestmark = pytest.mark.slow


def block(language: str, containing: str) -> str:
    for body in re.findall(rf"```{language}\n(.*?)```", README, re.DOTALL):
        if containing in body:
            return str(body)
    raise AssertionError(f"README has no {language} block containing {containing!r}")


def orchestrator(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", *args],
        cwd=cwd,
        env={k: v for k, v in os.environ.items() if not k.startswith("ORCHESTRATOR_")},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_readme_opens_with_the_two_commands() -> None:
    first = block("sh", "make run")
    assert [line.split("#")[0].strip() for line in first.strip().splitlines()] == [
        "make run",
        "make test",
    ]
    assert README.index("make run") < README.index("## ")


def test_the_first_pipeline_runs_as_the_readme_says(tmp_path: Path) -> None:
    (tmp_path / "dags").mkdir()
    (tmp_path / "dags" / "numbers.py").write_text(block("python", "dags/numbers.py"))
    ran = orchestrator(tmp_path, "run", "numbers", "--conf", '{"n": 10}')
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "285" in ran.stdout  # 0² + 1² + ... + 9²
    run_id = re.search(r"\b(\d{8}T\d{6}Z-[0-9a-f]{6})\b", ran.stdout)
    assert run_id, ran.stdout
    listed = orchestrator(tmp_path, "runs", "list")
    assert listed.returncode == 0 and run_id.group(1) in listed.stdout
    logs = orchestrator(tmp_path, "tasks", "logs", run_id.group(1), "total")
    assert logs.returncode == 0, logs.stderr
    assert "adding 10 squares" in logs.stdout


def test_the_config_snippet_is_valid(tmp_path: Path) -> None:
    (tmp_path / "orchestrator.toml").write_text(block("toml", "[pools]"))
    settings = load_settings(cwd=tmp_path, environ={})
    assert settings.slots == 4
    assert settings.pool_slots() == {"default": 4, "gpu": 1}
    assert settings.state_dir == tmp_path / ".orchestrator"
