"""A pre-started checker that forks one child per DAG file to check, instead of a new interpreter.

Starting `python -m orchestrator.loading.importprobe` costs about 0.25 s, nearly all of it the
interpreter and our imports, which every DAG file needs; the file's own import is usually a
few ms. So one server process (`python -m orchestrator.loading.checkserver`, in its own
session) imports the authoring layer, `triggers` and `sensors` once, then for each request
forks a child that runs `importprobe.main` on one file: the same time and memory limits, the
same detections, in a session of its own, with the parent-death signal set to the server.

The server never runs user code itself: only its children import a DAG file, and each is a
fresh copy of the server's pristine state (a child's import changes nothing of the server,
which is why a fork per file and not a reused worker). It is single-threaded, so a fork never
copies a lock another thread held. It watches its children through pidfds and kills each
child's process group before reaping it (a zombie's pid, which is the group's id, cannot be
reused, so the kill reaches no stranger), and the group also when the time runs out. It ends,
killing the checks still running, when its stdin closes: when the process that started it
exits or is killed (the kernel closes the pipe), so it never outlives the daemon or the CLI.

Requests and replies are JSON lines: `{"id", "argv", "cwd", "env", "seconds"}` in,
`{"id", "code"}` out (`code`: the child's exit code, negative for a signal, null if it ran
past `seconds`). The request carries the client's working directory and environment at the
time of the check, so a check sees what a check in a new process would have.
"""

from __future__ import annotations

import atexit
import gc
import importlib
import itertools
import json
import os
import pkgutil
import resource
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import IO, Any

from orchestrator.loading import importprobe

# What DAG files import, by name (warming it is no dependency of `loading` on these layers):
# the authoring layer whole, and the sources that need no client library. S3 and HTTP
# (aiobotocore, httpx: 0.5 s more for every server) stay for the files that use them.
_PRELOAD_ALL_OF = "orchestrator.authoring"
_PRELOAD = (
    *("triggers", "triggers.file", "triggers.time", "triggers.external"),
    *("sensors", "sensors.file", "sensors.time", "sensors.external"),
)
_REPLY_GRACE = 30.0  # beyond a check's own deadline, before the server is taken for stuck


class CheckServerGone(Exception):
    """The server could not start or ended; the caller checks in a new process instead."""


def kill_group(pid: int) -> None:
    """SIGKILL the process group `pid` leads (forks of the check included), if any is left."""
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


# -- the server process -------------------------------------------------------------------------


@dataclass
class _Check:
    request_id: int
    pid: int
    pidfd: int
    deadline: float


def serve() -> None:
    """Answer check requests on stdin until it closes."""
    _preload()
    gc.freeze()  # children then copy fewer pages: the collector leaves these objects alone
    poller = select.poll()
    poller.register(0, select.POLLIN)
    running: dict[int, _Check] = {}  # by pidfd
    pending = b""
    while True:
        for descriptor, _ in poller.poll(_milliseconds_left(running)):
            if descriptor != 0:
                _finish(running.pop(descriptor), poller, exited=True)
                continue
            chunk = os.read(0, 1 << 16)
            if not chunk:
                for check in running.values():
                    kill_group(check.pid)
                return
            *lines, pending = (pending + chunk).split(b"\n")
            for line in lines:
                check = _start(json.loads(line))
                running[check.pidfd] = check
                poller.register(check.pidfd, select.POLLIN)
        now = time.monotonic()
        for pidfd in [fd for fd, check in running.items() if check.deadline <= now]:
            _finish(running.pop(pidfd), poller, exited=False)


def _preload() -> None:
    package = importlib.import_module(_PRELOAD_ALL_OF)
    for module in pkgutil.iter_modules(package.__path__, f"{_PRELOAD_ALL_OF}."):
        importlib.import_module(module.name)
    for name in _PRELOAD:
        try:
            importlib.import_module(name)
        except ImportError:  # a module renamed: a slower check, not a broken one
            continue


def _milliseconds_left(running: dict[int, _Check]) -> int | None:
    if not running:
        return None
    soonest = min(check.deadline for check in running.values())
    return max(0, int((soonest - time.monotonic()) * 1000) + 1)


def _start(request: dict[str, Any]) -> _Check:
    deadline = time.monotonic() + float(request["seconds"])
    server = os.getpid()
    pid = os.fork()
    if pid == 0:
        _run_check(request, server)
    return _Check(request["id"], pid, os.pidfd_open(pid), deadline)


def _run_check(request: dict[str, Any], server: int) -> None:
    """In the child: become a new process checking one file, then exit; never returns."""
    try:
        os.setsid()
        report = request["argv"][1]
        stderr = os.open(f"{report}.stderr", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        nothing = os.open(os.devnull, os.O_RDWR)
        os.dup2(nothing, 0)
        os.dup2(nothing, 1)  # not the reply pipe: a fork the file leaves must not hold it
        os.dup2(stderr, 2)
        os.closerange(3, resource.getrlimit(resource.RLIMIT_NOFILE)[0])
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        importprobe.main([*request["argv"], str(server)])
    finally:
        os._exit(70)  # the probe exits itself; here only if it raised


def _finish(check: _Check, poller: select.poll, *, exited: bool) -> None:
    poller.unregister(check.pidfd)
    os.close(check.pidfd)
    kill_group(check.pid)  # before reaping: see the module's docstring
    _, status = os.waitpid(check.pid, 0)
    code = os.waitstatus_to_exitcode(status) if exited else None
    reply = json.dumps({"id": check.request_id, "code": code}).encode() + b"\n"
    while reply:
        reply = reply[os.write(1, reply) :]


# -- the client, in the daemon or the CLI --------------------------------------------------------


class CheckServer:
    """The client side: one server process, shared by the threads that check files."""

    def __init__(self, environment: dict[str, str]) -> None:
        argv = [sys.executable, "-m", "orchestrator.loading.checkserver"]
        try:
            self._process = subprocess.Popen(
                argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                start_new_session=True,  # a Ctrl-C to the CLI's group ends it through stdin
                env=environment,
            )
        except OSError as error:
            raise CheckServerGone(str(error)) from error
        self.owner = os.getpid()
        self._lock = threading.Lock()
        self._waiting: dict[int, Future[int | None]] = {}
        self._ids = itertools.count()
        self._gone = False
        replies = self._process.stdout
        if replies is None:  # never: stdout=PIPE; says so to the type checker
            raise CheckServerGone("the check server has no reply pipe")
        self._reader = threading.Thread(
            target=self._read_replies, args=(replies,), name="import-check-replies", daemon=True
        )
        self._reader.start()

    def check(self, argv: Sequence[str], environment: dict[str, str], seconds: float) -> int | None:
        """Run `importprobe` with `argv` in a child: its exit code, or None past `seconds`."""
        future: Future[int | None] = Future()
        request = {"argv": list(argv), "cwd": os.getcwd(), "env": environment, "seconds": seconds}
        with self._lock:
            if self._gone:
                raise CheckServerGone("the check server ended")
            request["id"] = request_id = next(self._ids)
            self._waiting[request_id] = future
            self._send(json.dumps(request).encode() + b"\n")
        try:
            return future.result(timeout=seconds + _REPLY_GRACE)
        except TimeoutError:
            self.close()
            raise CheckServerGone("the check server stopped answering") from None

    def _send(self, line: bytes) -> None:
        requests = self._process.stdin
        try:
            if requests is None:  # never: stdin=PIPE
                raise ValueError("no request pipe")
            requests.write(line)
            requests.flush()
        except (OSError, ValueError) as error:  # ValueError: closed meanwhile
            self._gone = True
            raise CheckServerGone(str(error)) from error

    def _read_replies(self, replies: IO[bytes]) -> None:
        for line in replies:
            reply = json.loads(line)
            with self._lock:
                future = self._waiting.pop(reply["id"], None)
            if future is not None:
                future.set_result(reply["code"])
        with self._lock:  # the server ended: nobody will answer the rest
            self._gone = True
            waiting, self._waiting = self._waiting, {}
        for future in waiting.values():
            future.set_exception(CheckServerGone("the check server ended"))

    @property
    def alive(self) -> bool:
        return not self._gone and self.owner == os.getpid()

    def close(self) -> None:
        """End the server (it kills the checks still running) and wait for it."""
        self._gone = True
        try:
            if self._process.stdin is not None:
                self._process.stdin.close()
        except OSError:
            pass
        try:
            self._process.wait(5)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._reader.join(5)  # it ends at the server's end of file; then its pipe can close
        if self._process.stdout is not None and not self._reader.is_alive():
            self._process.stdout.close()


_server: CheckServer | None = None
_server_lock = threading.Lock()


def shared_server(environment: dict[str, str]) -> CheckServer:
    """This process's check server, started on first use (or again, if it ended)."""
    global _server
    if not hasattr(os, "pidfd_open") or not hasattr(os, "fork"):
        raise CheckServerGone("no fork or pidfd here: each check is a new process")
    with _server_lock:
        if _server is None or not _server.alive:
            if _server is not None and _server.owner == os.getpid():
                _server.close()
            _server = CheckServer(environment)
            atexit.register(_server.close)
        return _server


if __name__ == "__main__":
    serve()
