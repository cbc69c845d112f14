"""JSON columns read back: a value that cannot be read marks its row damaged, never raises.

One row whose JSON was cut short by a disk error, or edited by hand, must not make every
listing of its table fail: `RowDamage` decodes each JSON column of a row, puts a placeholder
where a value cannot be read (not JSON, or JSON of the wrong shape), and notes why, for the
record's `damaged` field. The readers show such a row as damaged and go on; the engine fails
or skips what depends on it (see `scheduling.startup`); `orchestrator db check` names it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Shape:
    """What a column's JSON must hold, in words (for the damage note) and as a test."""

    name: str
    fits: Callable[[Any], bool]


def _is_text_pairs(value: Any) -> bool:
    return isinstance(value, list) and all(
        isinstance(pair, list) and len(pair) == 2 and all(isinstance(p, str) for p in pair)
        for pair in value
    )


def _is_text_mapping(value: Any) -> bool:
    return isinstance(value, dict) and all(isinstance(item, str) for item in value.values())


ANY_JSON = Shape("JSON", lambda value: True)
OBJECT = Shape("a JSON object", lambda value: isinstance(value, dict))
TEXT_PAIRS = Shape("a list of [text, text] pairs", _is_text_pairs)
TEXT_MAPPING = Shape("an object of text values", _is_text_mapping)


def _json_type(value: Any) -> str:
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}
    if value is None:
        return "null"
    return names.get(type(value), "a number")


@dataclass
class RowDamage:
    """Decodes the JSON columns of one row, noting each that cannot be read."""

    problems: list[str] = field(default_factory=list)

    def decode(self, text: Any, column: str, shape: Shape, placeholder: Any = None) -> Any:
        """The column's value; `placeholder` (and a note) if it is not `shape` JSON.

        NULL reads as `placeholder` without a note: only nullable columns can hold it.
        """
        if text is None:
            return placeholder
        try:
            value = json.loads(text)
        except (TypeError, ValueError, RecursionError) as error:
            self.problems.append(f"{column} is not valid JSON ({error})")
            return placeholder
        if not shape.fits(value):
            self.problems.append(f"{column} is not {shape.name} (it holds {_json_type(value)})")
            return placeholder
        return value

    @property
    def reason(self) -> str | None:
        """Why the row is damaged, every column named; None when all of it was read."""
        return "; ".join(self.problems) or None


def json_damage(text: Any, column: str, shape: Shape = ANY_JSON) -> str | None:
    """Why one JSON value cannot be read (None if it can), for values read without a record."""
    damage = RowDamage()
    damage.decode(text, column, shape)
    return damage.reason
