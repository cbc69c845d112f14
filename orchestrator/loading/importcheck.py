"""Check each DAG file's import in a short-lived subprocess before this process imports it.

Why a checked import, and not serialized DAGs the daemon never imports: the engine needs the
real objects a DAG file makes (async tasks run in its event loop, callbacks, `Defer(resume=)`
callables), and rebuilding them from a serialized form would mean importing the file anyway.
So each file is first imported in a fresh process (`importprobe`) under a time limit
(`dag_import_timeout`) and a memory limit (`dag_import_max_memory_mb`); a file that runs past
the time, ends the process, forks, leaves a thread running or allocates past the memory is an
import error with the reason, and only a file that passed is imported here. A fresh process
per file, rather than a reused pool, because an import changes its process for good
(`sys.modules`, threads, signal handlers): a pool worker would judge the next file wrongly.

What remains: the check proves what the file did once. A file that behaves differently on
its second import (time, randomness, the network) can still misbehave here.
"""

from __future__ import annotations

import hashlib
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


Verdict = DagImportError | None  # None: the file may be imported in this process
_Version = tuple[int, int, str, ImportLimits]  # mtime, size, content hash, limits

_verdicts: dict[str, tuple[_Version, Verdict]] = {}
_verdicts_lock = threading.Lock()


def check_files(paths: Sequence[str], limits: ImportLimits) -> dict[str, Verdict]:
    """Each file's verdict: None if it may be imported here, else the import error saying why.

    A file unchanged since its last check (same mtime, size and content hash) under the same
    limits is not checked again. A file that cannot be read passes: importing it reports that.
    """
    versions = {path: _version(path, limits) for path in paths}
    verdicts: dict[str, Verdict] = {}
    pending = []
    for path, version in versions.items():
        with _verdicts_lock:
            known = _verdicts.get(path)
        if version is None or (known is not None and known[0] == version):
            verdicts[path] = None if known is None or version is None else known[1]
        else:
            pending.append(path)
    if pending:
        with ThreadPoolExecutor(min(len(pending), _CHECKS_AT_ONCE)) as pool:
            checked = pool.map(lambda path: check_import(path, limits), pending)
            for path, verdict in zip(pending, checked, strict=True):
                verdicts[path] = _remember(path, versions[path], verdict)
    return {path: verdicts[path] for path in paths}


def _version(path: str, limits: ImportLimits) -> _Version | None:
    try:
        status = os.stat(path)
        with open(path, "rb") as file:
            digest = hashlib.sha256(file.read()).hexdigest()
    except OSError:
        return None
    return (status.st_mtime_ns, status.st_size, digest, limits)


def _remember(path: str, version: _Version | None, verdict: Verdict) -> Verdict:
    if version is not None:
        with _verdicts_lock:
            _verdicts[path] = (version, verdict)
    return verdict


def check_import(path: str, limits: ImportLimits) -> Verdict:
    """Import `path` in a new process under `limits`, in its own session; nothing of it is
    left running after (its process group is killed, forks included)."""
    with tempfile.TemporaryDirectory(prefix="orchestrator-import-") as folder:
        report = os.path.join(folder, "report.json")
        argv = [sys.executable, "-m", "orchestrator.loading.importprobe", path, report]
        argv += [repr(limits.timeout), str(limits.max_memory_mb), str(os.getpid())]
        with open(f"{report}.stderr", "wb") as stderr:
            process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                start_new_session=True,
                env=_probe_environment(),
            )
        code = _wait_then_end_group(process, limits.timeout + _KILL_AFTER)
        return _verdict(path, limits, code, report)


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
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
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


def _verdict(path: str, limits: ImportLimits, code: int | None, report: str) -> Verdict:
    try:
        with open(report) as file:
            found = json.load(file)
    except FileNotFoundError:
        if not os.path.exists(f"{report}.stack"):  # the probe died before the import
            return _probe_failure(path, code, _read_quietly(f"{report}.stderr"))
        return _unreported(path, limits, code, _read_quietly(f"{report}.stack"))
    if found["problem"] is None:
        return None
    return DagImportError(found["problem"], file=path, line=found["line"])


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
