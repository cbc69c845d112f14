"""Small output helpers shared by the commands: warnings, paths, JSON.

Only click and the standard library here: the command modules import this at start-up.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import click

from orchestrator.errors import DagError


def one_line(text: str) -> str:
    """`text` on one line, so each warning or table cell stays one line in a log."""
    return " ".join(part.strip() for part in text.splitlines() if part.strip())


def shorten(text: str, limit: int) -> str:
    """`text`, cut to `limit` characters with "..." when longer (tables; `--json` has it whole)."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def warn(message: str) -> None:
    """Print `warning: <message>` on stderr: something is wrong but the command goes on."""
    click.echo(f"{click.style('warning:', fg='yellow', bold=True)} {one_line(message)}", err=True)


def display_path(path: str | os.PathLike[str]) -> str:
    """`path` relative to the working directory when it is inside it, else absolute."""
    absolute = Path(path).absolute()
    try:
        return str(absolute.relative_to(Path.cwd()))
    except ValueError:
        return str(absolute)


def describe_dag_error(error: DagError) -> str:
    """`file:line: message` on one line, the file relative to the working directory if inside."""
    if error.file is None:
        return one_line(error.message)
    location = display_path(error.file) + (f":{error.line}" if error.line else "")
    return f"{location}: {one_line(error.message)}"


def echo_json(value: Any) -> None:
    """Print `value` as indented JSON on stdout, for scripts (`--json`)."""
    import json

    click.echo(json.dumps(value, indent=2, ensure_ascii=False, default=str))


def marked_damaged(cell: str, damaged: str | None) -> Any:
    """A table's first cell, with a red "damaged" marker when its row could not be read whole.

    The listing goes on: the row shows what could be read, and `damage_notes` says why.
    """
    from rich.text import Text

    text = Text(cell)
    if damaged is not None:
        text.append(" damaged", style="bold red")
    return text


def damage_notes(rows: list[tuple[str, str | None]]) -> list[Any]:
    """One red line per damaged (label, why) row, for under a table; none when all is read."""
    from rich.text import Text

    return [
        Text(
            f"{label} is damaged: {why} (`orchestrator db check` lists every damaged row)",
            style="red",
        )
        for label, why in rows
        if why is not None
    ]
