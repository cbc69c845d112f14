"""Import-check verdicts kept in the state directory, so a new process need not check again.

Each `orchestrator dags list` is a new process: without this file it would check every DAG
file again (a checker process each), which cost seconds on a folder of a few dozen files. A
verdict holds while nothing it was made from changed: the file (resolved path, size, mtime in
ns and SHA-256 of its content, since an edit can keep both size and mtime), the limits, the
checker itself (`CHECKER_VERSION`: an upgrade checks again), and the helper modules the file
imported from outside the installed packages (a helper edited to loop makes its DAG file
suspect again).

The file is JSON, never pickle: anyone who can write the state directory could otherwise run
code in every process that reads it. It is read with a size bound and every field is checked;
one that is damaged, hostile or of another version is ignored and rebuilt. It is written whole
(a temporary file, fsync, rename) and only holds files still present. A state directory nobody
may write (a read-only mount), or none yet (a command that only reads never makes one), just
means nothing is persisted.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeGuard

FILENAME = "import-verdicts.json"
_FORMAT = 1
_MAX_BYTES = 8 * 1024 * 1024  # about 20,000 entries: more than any DAGs folder we expect
_MAX_ENTRIES = 20_000
MAX_MODULES = 256  # helper modules tracked per file; a file importing more is not cached

Fingerprint = tuple[int, int, str]  # size, mtime in ns, SHA-256 of the content


def _checker_version() -> str:
    """Changes whenever the checker's code or the interpreter does."""
    digest = hashlib.sha256(sys.version.encode())
    folder = Path(__file__).parent
    for name in ("importcheck.py", "importprobe.py", "checkserver.py", "verdictcache.py"):
        try:
            digest.update((folder / name).read_bytes())
        except OSError:
            digest.update(name.encode())
    return digest.hexdigest()[:16]


CHECKER_VERSION = _checker_version()


def fingerprint(path: str) -> Fingerprint | None:
    """What must not change for a verdict on `path` to hold; None if it cannot be read."""
    try:
        with open(path, "rb") as file:
            status = os.fstat(file.fileno())
            digest = hashlib.sha256(file.read()).hexdigest()
    except OSError:
        return None
    return (status.st_size, status.st_mtime_ns, digest)


@dataclass(frozen=True)
class StoredVerdict:
    """One file's verdict and everything it depends on. `problem` None: the file passed."""

    file: Fingerprint
    limits: tuple[float, int]  # timeout, MiB
    problem: str | None
    line: int | None
    modules: tuple[tuple[str, Fingerprint], ...] = ()  # helpers the import loaded
    checker: str = CHECKER_VERSION

    def holds_for(self, file: Fingerprint, limits: tuple[float, int]) -> bool:
        """True if nothing this verdict was made from has changed since."""
        if (self.file, self.limits, self.checker) != (file, limits, CHECKER_VERSION):
            return False
        return all(fingerprint(path) == known for path, known in self.modules)


def read_verdicts(state_dir: Path) -> dict[str, StoredVerdict]:
    """The verdicts stored in `state_dir`, by resolved path; none if the file is absent,
    too large, damaged or of another format."""
    try:
        with open(state_dir / FILENAME, "rb") as file:
            data = file.read(_MAX_BYTES + 1)
        if len(data) > _MAX_BYTES:
            return {}
        found = json.loads(data)
        if not isinstance(found, dict) or found.get("format") != _FORMAT:
            return {}
        entries = found.get("verdicts")
        if not isinstance(entries, dict):
            return {}
        return {
            path: verdict
            for path, raw in list(entries.items())[:_MAX_ENTRIES]
            if (verdict := _parse(raw)) is not None
        }
    except (OSError, ValueError, RecursionError):
        return {}


def write_verdicts(state_dir: Path, verdicts: dict[str, StoredVerdict]) -> None:
    """Store `verdicts` (those of files still present) whole, or leave the old file as it was;
    never raises: a state directory we may not write, or that does not exist yet, only costs
    the next process the checks."""
    present = {p: v for p, v in verdicts.items() if os.path.isfile(p)}
    entries = dict(list(present.items())[-_MAX_ENTRIES:])
    text = json.dumps({"format": _FORMAT, "verdicts": {p: _dump(v) for p, v in entries.items()}})
    try:  # never made here: a command that only reads must leave no state directory behind
        descriptor, temporary = tempfile.mkstemp(prefix=f".{FILENAME}.", dir=state_dir)
    except OSError:
        return
    try:
        with os.fdopen(descriptor, "w") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, state_dir / FILENAME)
    except OSError:
        _remove_quietly(temporary)


def _remove_quietly(path: str) -> None:
    try:
        os.remove(path)
    except OSError:
        pass


def _dump(verdict: StoredVerdict) -> dict[str, Any]:
    return {
        "file": list(verdict.file),
        "limits": list(verdict.limits),
        "problem": verdict.problem,
        "line": verdict.line,
        "modules": [[path, list(known)] for path, known in verdict.modules],
        "checker": verdict.checker,
    }


def _parse(raw: object) -> StoredVerdict | None:
    """The verdict in `raw`, or None unless every field has the type it must."""
    if not isinstance(raw, dict):
        return None
    file, limits, modules = _fingerprint_of(raw.get("file")), raw.get("limits"), raw.get("modules")
    problem, line, checker = raw.get("problem"), raw.get("line"), raw.get("checker")
    if not _is_limits(limits):
        return None
    if (
        file is None
        or not (problem is None or isinstance(problem, str))
        or not (line is None or type(line) is int)
        or not isinstance(checker, str)
        or not isinstance(modules, list)
        or len(modules) > MAX_MODULES
    ):
        return None
    parsed = [_module_of(module) for module in modules]
    if any(module is None for module in parsed):
        return None
    timeout, megabytes = limits
    helpers = tuple(module for module in parsed if module is not None)
    return StoredVerdict(file, (float(timeout), megabytes), problem, line, helpers, checker)


def _is_limits(value: object) -> TypeGuard[list[Any]]:
    return (
        isinstance(value, list)
        and len(value) == 2
        and type(value[0]) in (int, float)
        and type(value[1]) is int
    )


def _module_of(raw: object) -> tuple[str, Fingerprint] | None:
    if not isinstance(raw, list) or len(raw) != 2 or not isinstance(raw[0], str):
        return None
    known = _fingerprint_of(raw[1])
    return None if known is None else (raw[0], known)


def _fingerprint_of(raw: object) -> Fingerprint | None:
    if (
        isinstance(raw, list)
        and len(raw) == 3
        and type(raw[0]) is int
        and type(raw[1]) is int
        and isinstance(raw[2], str)
    ):
        return (raw[0], raw[1], raw[2])
    return None
