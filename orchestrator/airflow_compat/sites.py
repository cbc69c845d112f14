"""Where in a DAG file an Airflow object was made: the first frame outside our packages."""

from __future__ import annotations

import os
import sys

from orchestrator.authoring.sites import Site

_OURS = tuple(
    os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), name, "")
    for name in ("airflow_compat", "authoring")
)


def user_site() -> Site:
    """The DAG file's line that made the object being built."""
    frame = sys._getframe(1)
    while frame.f_back is not None and os.path.abspath(frame.f_code.co_filename).startswith(_OURS):
        frame = frame.f_back
    return Site(frame.f_code.co_filename, frame.f_lineno)
