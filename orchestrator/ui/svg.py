"""Text for inline SVG attributes: numbers, polyline points, path data and state classes.

The pages' Content-Security-Policy allows no inline styles, so a picture never carries a
`style="..."` attribute: geometry goes in SVG attributes (x, y, width, height, points, d) and
colour in a CSS class (`class="state-success"`). These helpers make that text short and safe;
the templates can register them as Jinja filters.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

_NOT_CLASS_CHARACTER = re.compile(r"[^a-z0-9_-]+")


def number(value: float) -> str:
    """At most two decimals, no trailing zeros, no "-0": `12`, `12.5`, `0.33`."""
    text = f"{value:.2f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def points(coordinates: Iterable[tuple[float, float]]) -> str:
    """A polyline's `points`: `72,24 128,24`."""
    return " ".join(f"{number(x)},{number(y)}" for x, y in coordinates)


def path(coordinates: Iterable[tuple[float, float]]) -> str:
    """A path's `d` through the points with straight lines: `M72,24 L128,24`."""
    steps = [f"{number(x)},{number(y)}" for x, y in coordinates]
    return f"M{steps[0]}" + "".join(f" L{step}" for step in steps[1:]) if steps else ""


def state_class(state: str) -> str:
    """The CSS class that colours a task or run in `state`: `state-up_for_retry`.

    Anything but letters, digits, `_` and `-` becomes `-`, so a state can never break out
    of the attribute or name two classes.
    """
    return "state-" + (_NOT_CLASS_CHARACTER.sub("-", state.lower()) or "unknown")
