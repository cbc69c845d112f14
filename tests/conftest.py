"""Factories shared by the whole suite."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import triggerkit

from orchestrator.config import Settings

# Every daemon a test starts (in-process or as a subprocess) serves its API on a free port:
# tests run side by side, and a developer's own daemon may hold the default 8686.
os.environ.setdefault("ORCHESTRATOR_API_PORT", "0")


@pytest.fixture
def make_settings(tmp_path: Path) -> Callable[..., Settings]:
    """Settings on a fresh state directory; in-process by default (the fast mode)."""

    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "state_dir": tmp_path / "state",
            "dags_folder": tmp_path / "dags",
            "slots": 2,
            "in_process": True,
            "api_port": 0,
        }
        return Settings(**{**values, **overrides})

    return make


@pytest.fixture(autouse=True)
def fresh_gates() -> Iterator[None]:
    """Every test starts with no gate triggers open or waiting (see triggerkit)."""
    triggerkit.reset()
    yield
    triggerkit.reset()
