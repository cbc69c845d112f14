"""Check each DAG file's import in a short-lived process before this process imports it.

Why a checked import, and not serialized DAGs the daemon never imports: the engine needs the
real objects a DAG file makes (async tasks run in its event loop, callbacks, `Defer(resume=)`
callables), and rebuilding them from a serialized form would mean importing the file anyway.
So each file is first imported in a fresh process (`importprobe`) under a time limit
(`dag_import_timeout`) and a memory limit (`dag_import_max_memory_mb`); a file that runs past
the time, ends the process, forks, leaves a thread running or allocates past the memory is an
import error with the reason, and only a file that passed is imported here. A fresh process
per file, rather than a reused pool, because an import changes its process for good
(`sys.modules`, threads, signal handlers): a pool worker would judge the next file wrongly.

Fresh but cheap: each is a fork of a pre-started check server that has already imported what
DAG files need (`checkserver`), and a new interpreter only where there is none (no fork or
pidfd, or the server ended). And rarely: a verdict is kept, in this process and in the state
directory, until the file, its helpers, the limits or the checker change (`verdictcache`).

What remains: the check proves what the file did once. A file that behaves differently on
its second import (time, randomness, the network) can still misbehave here.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import select
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from orchestrator.config import Settings
from orchestrator.errors import DagImportError
from orchestrator.loading.checkserver import CheckServerGone, kill_group, shared_server
from orchestrator.loading.verdictcache import (
    MAX_MODULES,
    Fingerprint,
    StoredVerdict,
    fingerprint,
    read_verdicts,
    write_verdicts,
)

# Several at once, so a folder of files costs about its slowest import, not their sum.
_CHECKS_AT_ONCE = max(2, min(8, os.cpu_count() or 1))
# The probe times the import alone and stops itself (with the stuck line); this backstop,
# counted from the start of the probe's interpreter, only kills one that could not: generous,
# so a slow interpreter start on a loaded machine is never taken for a slow import.
_KILL_AFTER = 10.0
_PACKAGES_ROOT = str(Path(__file__).resolve().parents[2])  # holds orchestrator/, triggers/


@dataclass(frozen=True)
class ImportLimits:
    """What one DAG file's import may take: seconds, and MiB of memory."""

    timeout: float = 30.0
    max_memory_mb: int = 1024

    @classmethod
    def of(cls, settings: Settings) -> ImportLimits:
        return cls(settings.dag_import_timeout, settings.dag_import_max_memory_mb)

    @property
    def key(self) -> tuple[float, int]:
        """The limits as a stored verdict holds them."""
        return (float(self.timeout), self.max_memory_mb)


Verdict = DagImportError | None  # None: the file may be imported in this process


@dataclass(frozen=True)
class _Outcome:
    """What one check found: its verdict, and the helper files the import loaded (None when
    the import never finished, so nobody knows: such a verdict is not persisted)."""

    verdict: Verdict
    modules: list[str] | None = None
    lasting: bool = True  # False: the check itself could not run; check again next time


# By resolved path: this process's verdicts, those not persisted included (the daemon keeps
# them while it runs; another process checks such a file again).
_verdicts: dict[str, StoredVerdict] = {}
_verdicts_lock = threading.Lock()


def check_files(
    paths: Sequence[str], limits: ImportLimits, *, state_dir: Path | None = None
) -> dict[str, Verdict]:
    """Each file's verdict: None if it may be imported here, else the import error saying why.

    A file unchanged since its last check (same size, mtime, content hash and helper modules)
    under the same limits is not checked again; with `state_dir`, that holds across processes
    (`verdictcache`). A file that cannot be read passes: importing it reports that.
    """
    stored = {} if state_dir is None else read_verdicts(state_dir)
    with _verdicts_lock:
        known = {**stored, **_verdicts}
    verdicts: dict[str, Verdict] = {}
    pending: dict[str, Fingerprint] = {}
    for path in paths:
        found = fingerprint(path)
        entry = known.get(os.path.realpath(path))
        if found is None:
            verdicts[path] = None
        elif entry is not None and entry.holds_for(found, limits.key):
            verdicts[path] = _error(path, entry.problem, entry.line)
        else:
            pending[path] = found
    if pending:
        lasting = _check_all(pending, limits, verdicts)
        if state_dir is not None and lasting:
            write_verdicts(state_dir, {**stored, **lasting})
    return {path: verdicts[path] for path in paths}


def _check_all(
    pending: dict[str, Fingerprint], limits: ImportLimits, verdicts: dict[str, Verdict]
) -> dict[str, StoredVerdict]:
    """Check the files at once into `verdicts`, remember each that lasts in this process, and
    return those whose helpers are known (to persist), by resolved path."""
    with ThreadPoolExecutor(min(len(pending), _CHECKS_AT_ONCE)) as pool:
        outcomes = list(pool.map(lambda path: _check_import(path, limits), pending))
    persisted = {}
    for (path, found), outcome in zip(pending.items(), outcomes, strict=True):
        verdicts[path] = outcome.verdict
        if not outcome.lasting:
            continue
        stored = _stored(found, limits, outcome)
        real = os.path.realpath(path)
        with _verdicts_lock:
            _verdicts[real] = stored
        if outcome.modules is not None and len(stored.modules) == len(outcome.modules):
            persisted[real] = stored
    return persisted


def _stored(found: Fingerprint, limits: ImportLimits, outcome: _Outcome) -> StoredVerdict:
    verdict = outcome.verdict
    modules = [] if outcome.modules is None else outcome.modules[:MAX_MODULES]
    helpers = tuple((m, known) for m in modules if (known := fingerprint(m)) is not None)
    problem, line = (None, None) if verdict is None else (verdict.message, verdict.line)
    return StoredVerdict(found, limits.key, problem, line, helpers)


def _error(path: str, problem: str | None, line: int | None) -> Verdict:
    return None if problem is None else DagImportError(problem, file=path, line=line)


def _check_import(path: str, limits: ImportLimits) -> _Outcome:
    """Import `path` in a checker under `limits`, in its own session; nothing of it is left
    running after (its process group is killed, forks included). A fork of the check server
    if it runs, else a new process."""
    with tempfile.TemporaryDirectory(prefix="orchestrator-import-") as folder:
        report = os.path.join(folder, "report.json")
        argv = [path, report, repr(limits.timeout), str(limits.max_memory_mb)]
        environment = _probe_environment()
        try:
            server = shared_server(environment)
            code = server.check(argv, environment, limits.timeout + _KILL_AFTER)
        except CheckServerGone:
            code = _check_in_new_process(argv, limits, environment)
        return _outcome(path, limits, code, report)


def _check_in_new_process(
    argv: list[str], limits: ImportLimits, environment: dict[str, str]
) -> int | None:
    report = argv[1]
    command = [sys.executable, "-m", "orchestrator.loading.importprobe", *argv, str(os.getpid())]
    with open(f"{report}.stderr", "wb") as stderr:
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            start_new_session=True,
            env=environment,
        )
    return _wait_then_end_group(process, limits.timeout + _KILL_AFTER)


def prestart_checker() -> None:
    """Start this process's check server now, in the background, for a command about to load
    the DAGs folder: the server's own start (importing the orchestrator) then overlaps the
    command's imports instead of following them. Nothing happens where there is no server."""
    with contextlib.suppress(CheckServerGone):
        shared_server(_probe_environment())


def _probe_environment() -> dict[str, str]:
    """This environment, with our packages importable even when found through `sys.path`."""
    parts = [_PACKAGES_ROOT, *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(parts)}


def _wait_then_end_group(process: subprocess.Popen[bytes], seconds: float) -> int | None:
    """The probe's exit code, or None if it ran past `seconds`; then kill its process group.

    The group is killed before the probe is reaped: while it is a zombie its pid (the group's
    id) cannot be reused, so the kill cannot reach a stranger.
    """
    try:
        exited = _wait_unreaped(process, seconds)
    finally:
        kill_group(process.pid)
        code = process.wait()
    return code if exited else None


def _wait_unreaped(process: subprocess.Popen[bytes], seconds: float) -> bool:
    try:
        descriptor = os.pidfd_open(process.pid)
    except (AttributeError, OSError):  # no pidfd (not Linux 5.3+): wait and reap
        try:
            process.wait(seconds)
        except subprocess.TimeoutExpired:
            return False
        return True
    try:
        poller = select.poll()  # not select(): the daemon may hold more than 1024 descriptors
        poller.register(descriptor, select.POLLIN)
        return bool(poller.poll(seconds * 1000))
    finally:
        os.close(descriptor)


def _outcome(path: str, limits: ImportLimits, code: int | None, report: str) -> _Outcome:
    try:
        with open(report) as file:
            found = json.load(file)
    except FileNotFoundError:
        if not os.path.exists(f"{report}.stack"):  # the probe died before the import
            failure = _probe_failure(path, code, _read_quietly(f"{report}.stderr"))
            return _Outcome(failure, lasting=False)
        return _Outcome(_unreported(path, limits, code, _read_quietly(f"{report}.stack")))
    return _Outcome(_error(path, found["problem"], found["line"]), found["modules"])


def _unreported(path: str, limits: ImportLimits, code: int | None, stack: str) -> DagImportError:
    """Why the probe ended without a report: the time ran out, a signal, or the file exited."""
    if code is None or stack.startswith("Timeout"):
        return DagImportError(
            f"import took longer than {limits.timeout:g} s (dag_import_timeout), so it was "
            "stopped; a DAG file must not wait on anything at import: do it inside a task",
            file=path,
            line=_line_in_dump(stack, path),
        )
    if code < 0:
        name = signal.Signals(-code).name
        hint = " (out of memory?)" if -code == signal.SIGKILL else ""
        return DagImportError(f"the import was killed by {name}{hint}", file=path)
    return DagImportError(
        f"the file exited the process (exit code {code}) while being imported; DAG files "
        "must not exit (put script code under `if __name__ == '__main__':`)",
        file=path,
    )


def _probe_failure(path: str, code: int | None, stderr: str) -> DagImportError:
    """Not the file's fault: say so, but still do not import a file nobody could check."""
    last = stderr.strip().splitlines()[-1:] or [f"exit code {code}"]
    return DagImportError(f"the import check could not run ({last[0]}), so not imported", file=path)


_FRAME = re.compile(r'^\s*File "(?P<file>.*)", line (?P<line>\d+)', re.MULTILINE)


def _line_in_dump(stack: str, path: str) -> int | None:
    """The innermost line of `path` in faulthandler's dump (most recent call first)."""
    for match in _FRAME.finditer(stack):
        if match["file"] == path:
            return int(match["line"])
    return None


def _read_quietly(path: str) -> str:
    try:
        with open(path, errors="replace") as file:
            return file.read()
    except OSError:
        return ""
