"""Factories shared by the whole suite."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from orchestrator.config import Settings


@pytest.fixture
def make_settings(tmp_path: Path) -> Callable[..., Settings]:
    """Settings on a fresh state directory; in-process by default (the fast mode)."""

    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "state_dir": tmp_path / "state",
            "dags_folder": tmp_path / "dags",
            "slots": 2,
            "in_process": True,
        }
        return Settings(**{**values, **overrides})

    return make
