"""A try's log file on disk: opened for appending (its folders made as needed), or one line added.

Where a try's log is: `logs/DAG/RUN/TASK.try-N.log` in the state directory (the scheduler
names it). The file is made by the first byte the try, or the engine about it, writes: a try
that writes nothing leaves none, and every reader takes a missing log as an empty one. On
ext4 without a journal, as on this project's VMs, making a file walks past every inode freed
in the last minute (`recently_deleted`), so one `open(O_CREAT)` costs 0.03-0.6 ms; a quiet
no-op task paid that on its way to the next one.
"""

from __future__ import annotations

import logging
import os
from typing import TextIO

logger = logging.getLogger("orchestrator.executor")


def open_log(log_path: str) -> TextIO:
    """The try's log opened for appending, creating its folders."""
    return os.fdopen(
        _open_appending(log_path, os.O_WRONLY), "a", encoding="utf-8", errors="backslashreplace"
    )


def open_log_fd(log_path: str) -> int:
    """The try's log as a file descriptor for reading and appending, creating its folders."""
    return _open_appending(log_path, os.O_RDWR)


def _open_appending(log_path: str, mode: int) -> int:
    # Open first: the run's folder is there for all but its first try, and one `open` is
    # cheaper than `makedirs` checking each level every time.
    flags = mode | os.O_CREAT | os.O_APPEND
    try:
        return os.open(log_path, flags, 0o644)
    except FileNotFoundError:
        folder = os.path.dirname(log_path)
        if not folder:
            raise
        os.makedirs(folder, exist_ok=True)
        return os.open(log_path, flags, 0o644)


def append_to_log(log_path: str, line: str) -> None:
    """Add one line to a try's log: what the engine itself has to say (a timeout, a crash).

    Best effort: the same words are stored with the try's outcome, so a log that cannot be
    written (a full disk) loses nothing that matters, and must not stop the engine.
    """
    if not log_path:
        return
    try:
        with open_log(log_path) as log:
            log.write(line.rstrip("\n") + "\n")
    except OSError as error:
        logger.warning("cannot write to the try's log %s: %s", log_path, error)
