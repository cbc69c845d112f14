"""The checker subprocess: import one DAG file under limits and report what the import did.

Run by `importcheck` as `python -m orchestrator.loading.importprobe PATH REPORT SECONDS MIB PID`
(PID: the loading process), in its own session. It caps its data segment at MIB (an
allocation past it is a `MemoryError`), arms faulthandler to dump the stack and exit after
SECONDS (so a stuck import is reported at the line it was stuck on), notes every `os.fork()`,
and after the import looks for threads still running. It writes a JSON report
`{"problem": ..., "line": ..., "modules": [...]}` to REPORT, with `problem` null when the file
may be imported by the daemon and `modules` the helper files it imported; no report means the
file ended the process itself. `checkserver` runs the same `main` in a fork of itself.

Errors the file raises are not problems here: the daemon's own import reports them the same
way. Only what would stop, hang or bloat the daemon is.
"""

from __future__ import annotations

import ctypes
import faulthandler
import json
import os
import resource
import signal
import sys
import sysconfig
import threading
import traceback

from orchestrator.loading.importer import FileResult, load_dag_file
from orchestrator.loading.verdictcache import MAX_MODULES

_MIB = 1024 * 1024
_PR_SET_PDEATHSIG = 1


class _Watch:
    """What the import did that a DAG file must not: forks (with their line)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.fork_lines: list[int | None] = []
        self.is_fork_copy = False

    def arm(self) -> None:
        os.register_at_fork(after_in_parent=self._forked, after_in_child=self._in_copy)

    def _forked(self) -> None:
        self.fork_lines.append(line_in_stack(self.path))

    def _in_copy(self) -> None:
        self.is_fork_copy = True


def line_in_stack(path: str) -> int | None:
    """The innermost line of `path` in the current stack."""
    line = None
    for frame in traceback.extract_stack():
        if frame.filename == path:
            line = frame.lineno
    return line


def main(argv: list[str]) -> None:
    path, report, timeout, megabytes, parent = (
        argv[0],
        argv[1],
        float(argv[2]),
        int(argv[3]),
        int(argv[4]),
    )
    _die_with_parent(parent)
    _limit_memory(megabytes)
    watch = _Watch(path)
    watch.arm()
    before = set(sys.modules)
    with open(f"{report}.stack", "w") as stack:
        faulthandler.dump_traceback_later(timeout, exit=True, file=stack)
        result = load_dag_file(path)
        faulthandler.cancel_dump_traceback_later()
    if watch.is_fork_copy:
        os._exit(0)  # the file's fork: only the original reports
    problem, line = _problem(watch, result, megabytes)
    modules = _helper_files(before, path)
    with open(f"{report}.partial", "w") as file:
        json.dump({"problem": problem, "line": line, "modules": modules}, file)
    os.rename(f"{report}.partial", report)  # whole, or not there
    os._exit(0)  # not `exit`: it would wait for the threads the file started


def _helper_files(before: set[str], path: str) -> list[str]:
    """The files of the modules the import loaded from outside the installed packages (the
    file's own helpers): a verdict on the file holds only while they are unchanged. At most
    one more than `MAX_MODULES`, which is enough to say "too many to track"."""
    paths = sysconfig.get_paths()
    installed = {paths[key] for key in ("stdlib", "platstdlib", "purelib", "platlib")}
    installed |= {sys.prefix, sys.base_prefix, sys.exec_prefix}
    prefixes = tuple(os.path.join(folder, "") for folder in installed)
    files = []
    for name, module in list(sys.modules.items()):
        file = getattr(module, "__file__", None)
        if name in before or not isinstance(file, str) or file.startswith(prefixes):
            continue
        if os.path.abspath(file) != path:
            files.append(os.path.realpath(file))
        if len(files) > MAX_MODULES:
            break
    return files


def _die_with_parent(parent: int) -> None:
    """Linux: be killed if the thread that started this check goes (the daemon was killed);
    the check runs in its own session, so no signal to the daemon's group reaches it."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL))
    except (OSError, AttributeError):  # not Linux: the timeout still ends the check
        pass
    if os.getppid() != parent:  # it died before the line above: nobody wants the answer
        os._exit(0)


def _limit_memory(megabytes: int) -> None:
    # RLIMIT_DATA, not RLIMIT_AS: libraries reserve address space they never use (thread
    # stacks, arenas, CUDA), so an address-space cap refuses files that use little memory.
    limit = megabytes * _MIB
    _, hard = resource.getrlimit(resource.RLIMIT_DATA)
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_DATA, (limit, hard))


def _problem(watch: _Watch, result: FileResult, megabytes: int) -> tuple[str | None, int | None]:
    if watch.fork_lines:
        return (
            "forked the process at import (os.fork()); a DAG file must not fork: start "
            "processes inside a task",
            watch.fork_lines[0],
        )
    running = [
        thread.name
        for thread in threading.enumerate()
        if thread is not threading.main_thread() and not thread.daemon and thread.is_alive()
    ]
    if running:
        return (
            f"started a thread at import ({', '.join(running)}) that was still running when the "
            "import ended; it would keep the daemon from stopping: start threads inside a task",
            None,
        )
    return _memory_problem(result, megabytes)


def _memory_problem(result: FileResult, megabytes: int) -> tuple[str | None, int | None]:
    used = _peak_resident_mib()
    errors = [error for error in result.errors if error.message.startswith("MemoryError")]
    if not errors and used <= megabytes:
        return None, None
    return (
        f"used more than {megabytes} MiB while being imported (dag_import_max_memory_mb); "
        "load large data inside a task, not at import",
        errors[0].line if errors else None,
    )


def _peak_resident_mib() -> int:
    """This process's own peak resident memory, in MiB.

    Not `ru_maxrss`: Linux carries the peak of the process that forked us across `exec`, so a
    checker started by a large daemon (or test run) would seem to use all of its memory.
    `VmHWM` belongs to the memory map `exec` made new.
    """
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) // 1024  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024  # KiB on Linux


if __name__ == "__main__":
    main(sys.argv[1:])
