"""SVG attribute text: short numbers, points and paths, and state classes that stay classes."""

from __future__ import annotations

import pytest

from orchestrator.ui.svg import number, path, points, state_class


@pytest.mark.parametrize(
    ("value", "text"),
    [(12, "12"), (12.0, "12"), (12.5, "12.5"), (0.333, "0.33"), (-3.456, "-3.46"), (-0.001, "0")],
)
def test_numbers_are_short(value: float, text: str) -> None:
    assert number(value) == text


def test_points_and_paths() -> None:
    assert points([(72, 24), (128, 24.5)]) == "72,24 128,24.5"
    assert path([(72, 24), (128, 24.5), (200, 30)]) == "M72,24 L128,24.5 L200,30"
    assert path([]) == points([]) == ""


@pytest.mark.parametrize(
    ("state", "css_class"),
    [
        ("success", "state-success"),
        ("up_for_retry", "state-up_for_retry"),
        ('x" onload="evil', "state-x-onload-evil"),
        ("", "state-unknown"),
    ],
)
def test_a_state_becomes_one_harmless_class(state: str, css_class: str) -> None:
    assert state_class(state) == css_class
