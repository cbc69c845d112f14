"""The state directory: where the database lives, checked with a real write before use.

These checks run before SQLite sees the path so the user gets a sentence that names the
directory and how to choose another, instead of SQLite's "unable to open database file".
They do blocking file-system calls: run them in a worker thread.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from orchestrator.errors import StateDirError, StoreError

DB_FILENAME = "orchestrator.db"

_HOW_TO_CHOOSE = (
    "Choose another with --state-dir, the ORCHESTRATOR_STATE_DIR environment variable, "
    "or state_dir in orchestrator.toml."
)


def prepare_state_dir(state_dir: Path, *, readonly: bool) -> Path:
    """Return the absolute database path in `state_dir`, once the directory is known usable.

    For writing, the directory is created (parents too) and probed with a real write, because
    permission bits do not tell about read-only mounts or ACLs. Read-only, nothing is created:
    a missing database is reported instead.
    """
    state_dir = state_dir.absolute()  # messages name the real place; SQLite URIs need it
    db_path = state_dir / DB_FILENAME
    if readonly:
        _require_database(db_path)
    else:
        _create_writable_dir(state_dir)
    return db_path


def _require_database(db_path: Path) -> None:
    if not db_path.is_file():
        raise StoreError(
            f"There is no state at {db_path} yet: run a pipeline first "
            "(`orchestrator run DAG`), or check --state-dir."
        )


def _create_writable_dir(state_dir: Path) -> None:
    try:
        state_dir.mkdir(parents=True, exist_ok=True)
        _probe_write(state_dir)
    except OSError as error:
        reason = _describe(state_dir, error)
        raise StateDirError(
            f"The state directory {state_dir} cannot be used: {reason}. {_HOW_TO_CHOOSE}"
        ) from error


def _probe_write(directory: Path) -> None:
    """Create, write and remove a uniquely named file, as SQLite will need to."""
    descriptor, name = tempfile.mkstemp(prefix=".write-probe-", dir=directory)
    try:
        os.write(descriptor, b"probe")
    finally:
        os.close(descriptor)
        os.unlink(name)


def _describe(state_dir: Path, error: OSError) -> str:
    """Why `state_dir` failed, in words that point at the culprit on the path."""
    if isinstance(error, FileExistsError):
        return "it is a regular file, not a directory"
    if isinstance(error, NotADirectoryError):
        blocker = _first_file_on_path(state_dir)
        return f"{blocker or 'a part of its path'} is a regular file, not a directory"
    if isinstance(error, PermissionError):
        return f"permission denied ({error.filename or state_dir})"
    return error.strerror or str(error)


def _first_file_on_path(path: Path) -> Path | None:
    """The ancestor of `path` that exists but is not a directory, if any."""
    for ancestor in reversed(path.parents):
        if ancestor.exists() and not ancestor.is_dir():
            return ancestor
    return None
