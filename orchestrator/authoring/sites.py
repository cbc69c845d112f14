"""Sites: the line of the user's code that made a DAG or a task.

Errors about a DAG point at the pipeline file, not at this package, so whatever a DAG file
defines records where it was made (`caller_site`) at the moment it is made.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from types import FrameType

# Frames in this folder (any authoring module) are ours; the first frame outside is the user's.
_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


@dataclass(frozen=True)
class Site:
    """Where in the user's code something was defined."""

    file: str
    line: int


def caller_site(owner: object | None = None) -> Site:
    """The user's line that made an object: the first stack frame outside this package.

    Frames running a method of `owner` itself are skipped too, so a task made by an operator
    or sensor class (whose `__init__` calls `super().__init__`) points at the line that
    created it, not at the class's own code.
    """
    frame = sys._getframe(1)
    while frame.f_back is not None and (
        _in_package(frame) or (owner is not None and _runs_method_of(frame, owner))
    ):
        frame = frame.f_back
    return Site(frame.f_code.co_filename, frame.f_lineno)


def _in_package(frame: FrameType) -> bool:
    return os.path.dirname(os.path.abspath(frame.f_code.co_filename)) == _PACKAGE_DIR


def _runs_method_of(frame: FrameType, owner: object) -> bool:
    code = frame.f_code
    return code.co_argcount > 0 and frame.f_locals.get(code.co_varnames[0]) is owner
