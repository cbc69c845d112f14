"""What runs on a Dask worker: one try, in a worker process of our own below the Dask worker.

The Dask executor submits `run_try` (by reference: `orchestrator` is installed on the workers)
with a JSON-safe payload. On the Dask worker, in Dask's task thread, it:

1. checks that this worker runs the daemon's Python and orchestrator versions (else a clear
   failure naming both: a pickled job that half-works is worse than none);
2. writes the DAG file's source, shipped with the job, to a folder named by its hash, and
   points the job there: the worker imports exactly the version the daemon dispatched, in
   isolation, and never needs the DAGs folder (helper modules the file imports must be
   installed on the workers, like any other package);
3. runs the job in a `python -m orchestrator.execution.worker` process kept per Dask thread
   (started once, reused: the same protocol, subreaper and cleanup as the local pool), so a
   cancel or a timeout can kill the task's process tree without touching the Dask worker;
4. points the try's output (fds 1 and 2 of the task, its subprocesses and `logging`) at a
   FIFO (one per worker process of ours, made when it starts, in a folder of the Dask
   worker's that the next worker removes if this one was killed) and ships what arrives
   as `orchestrator-log` events to the daemon while it runs; what is left when the try
   ends comes back with the outcome, with the count of bytes sent, and so do the rendered
   template fields an Airflow task recorded beside its log (the FIFO).

A try registers under its token, so `stop_try` (a cancel) and `stop_unknown_tries` (the
daemon's reconcile after it restarts or reconnects), run on every worker through
`Client.run`, find its process.
"""

from __future__ import annotations

import functools
import glob
import hashlib
import itertools
import json
import os
import platform
import select
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any

from distributed import WorkerPlugin
from distributed.core import Status

from orchestrator.airflow_compat.rendered import take_rendered
from orchestrator.execution.try_processes import stop_process_tree
from orchestrator.execution.worker import encode_message

#: The topic the try's output travels on, in chunks: {"attempt", "data"}.
LOG_TOPIC = "orchestrator-log"
_CHUNK = 256 * 1024
#: How long a worker process may take to import and say it is ready.
_START_TIMEOUT = 60.0


@functools.cache
def versions() -> dict[str, str]:
    """What must match between the daemon and a worker: Python's and orchestrator's versions."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        ours = version("orchestrator")
    except PackageNotFoundError:  # run from a checkout
        ours = "unknown"
    return {"python": platform.python_version(), "orchestrator": ours}


@dataclass
class _Child:
    """One worker process of ours, below a Dask thread, and the FIFO its tries write to.

    The FIFO lives as long as the process: made once, not per try. This side holds it open
    for reading *and* writing, so it never reads as at its end (which `select` would report
    as readable, over and over) between one try's writer and the next.
    """

    process: subprocess.Popen[bytes]
    fifo: str
    log: int  # our end of the FIFO, non-blocking
    killed: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def start(cls) -> _Child:
        folder = _fifo_folder(os.getpid())
        os.makedirs(folder, mode=0o700, exist_ok=True)
        fifo = os.path.join(folder, f"log-{next(_fifo_numbers)}")
        os.mkfifo(fifo, 0o600)
        log = os.open(fifo, os.O_RDWR | os.O_NONBLOCK)
        process = subprocess.Popen(
            [sys.executable, "-m", "orchestrator.execution.worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            start_new_session=True,
        )
        child = cls(process, fifo, log)
        assert process.stdout is not None
        ready, _, _ = select.select([process.stdout], [], [], _START_TIMEOUT)
        line = process.stdout.readline() if ready else b""
        if line.strip() != b'{"ready":true}':
            child.kill()
            raise RuntimeError(f"a worker process failed to start (it sent {line[:200]!r})")
        return child

    def alive(self) -> bool:
        return self.process.poll() is None and not self.killed

    def kill(self) -> None:
        with self.lock:
            self.killed = True
            if self.process.poll() is None:
                stop_process_tree(self.process.pid)
            self.process.wait()

    def close(self) -> None:
        """Kill the process and remove the FIFO (a child replaced, or the worker closing)."""
        self.kill()
        with suppress(OSError):
            os.close(self.log)
        with suppress(OSError):
            os.unlink(self.fifo)


_fifo_numbers = itertools.count()


def _fifo_folder(pid: int) -> str:
    """Where the FIFOs of the Dask worker process `pid` are (removed once it is gone)."""
    return os.path.join(tempfile.gettempdir(), f"orchestrator-worker-{pid}")


def _remove_folders_of_dead_workers() -> None:
    """A Dask worker killed with -9 leaves its FIFOs behind: the next one removes them."""
    prefix = os.path.join(tempfile.gettempdir(), "orchestrator-worker-")
    for folder in glob.glob(f"{glob.escape(prefix)}*"):
        pid = folder[len(prefix) :]
        if pid.isdecimal() and not _is_alive(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)


def _is_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's: not ours to remove
        return True
    return True


_children: dict[int, _Child] = {}  # by Dask thread
_running: dict[str, tuple[str, _Child]] = {}  # by try token: (owner, child)
_registry_lock = threading.Lock()


def _child_for_this_thread() -> _Child:
    thread = threading.get_ident()
    child = _children.get(thread)
    if child is None or not child.alive():
        if child is not None:
            child.close()
        child = _Child.start()
        _children[thread] = child
    return child


# -- run by the Dask executor through `Client.run`, on every worker -----------------------------


def stop_try(token: str) -> bool:
    """Kill the process of the try with this token if it runs here; True if it did."""
    with _registry_lock:
        entry = _running.get(token)
    if entry is None:
        return False
    entry[1].kill()
    return True


def stop_unknown_tries(owner: str, live: list[str]) -> list[str]:
    """Kill every try of daemon `owner` running here that it does not know it runs."""
    with _registry_lock:
        stale = [t for t, (o, _) in _running.items() if o == owner and t not in set(live)]
    for token in stale:
        stop_try(token)
    return stale


class TryReaper(WorkerPlugin):
    """Kills the tries' processes when the Dask worker closes (say, its scheduler is gone).

    Without it, a closing worker waits for its task threads, so a try would run on, unseen,
    for as long as Dask's shutdown timeout, and the daemon would run it again meanwhile.
    """

    name = "orchestrator-try-reaper"

    def setup(self, worker: Any) -> None:
        _remove_folders_of_dead_workers()

    def teardown(self, worker: Any) -> None:
        # Also called when the daemon registers the plugin again (on each connection):
        # only a worker that closes stops what runs on it.
        if worker.status in (Status.closing, Status.closing_gracefully, Status.closed):
            for child in list(_children.values()):
                child.close()
            with suppress(OSError):
                os.rmdir(_fifo_folder(os.getpid()))


def worker_resources(dask_scheduler: Any) -> dict[str, dict[str, float]]:
    """On the scheduler: the resources each worker offers, by address."""
    return {address: dict(state.resources) for address, state in dask_scheduler.workers.items()}


# -- the task Dask runs ---------------------------------------------------------------------


def run_try(payload: dict[str, Any]) -> dict[str, Any]:
    """Run one try here; return {"outcome", "log", "shipped", "pid"} (see the module's doc)."""
    mismatch = _version_mismatch(payload["versions"])
    if mismatch:
        return _failed_before_start(mismatch)
    job = json.loads(payload["job"])
    job["fileloc"] = _dag_file(payload["source"], job["fileloc"])
    job["log_max_bytes"] = 0  # the daemon's copy is held to the cap
    return _run_job(job, payload["attempt"], payload["owner"])


def _version_mismatch(daemon: dict[str, str]) -> str:
    ours = versions()
    if ours == daemon:
        return ""
    return (
        f"the Dask worker runs Python {ours['python']} with orchestrator {ours['orchestrator']}, "
        f"but the daemon runs Python {daemon['python']} with orchestrator "
        f"{daemon['orchestrator']}: install the same versions on both"
    )


def _dag_file(source: str, fileloc: str) -> str:
    """The shipped source as a file in a folder named by its hash, written once per version.

    Each worker process remembers the versions it has seen, so a try of a known version
    costs no file-system call; the first use of a version (written or found) marks it as
    recently used, and writing a new one drops all but the newest `DAG_VERSIONS_KEPT`.
    """
    digest = hashlib.sha256(source.encode()).hexdigest()[:16]
    key = (digest, os.path.basename(fileloc))
    path = _dag_paths.get(key)
    if path is not None:
        return path
    root = os.path.join(tempfile.gettempdir(), "orchestrator-dags")
    folder = os.path.join(root, digest)
    path = os.path.join(folder, key[1])
    if os.path.exists(path):
        with suppress(OSError):
            os.utime(folder)
    else:
        os.makedirs(folder, exist_ok=True)
        temporary = f"{path}.{os.getpid()}.tmp"
        with open(temporary, "w", encoding="utf-8") as file:
            file.write(source)
        os.replace(temporary, path)
        _forget_old_versions(root)
    if len(_dag_paths) >= DAG_VERSIONS_KEPT:
        _dag_paths.clear()
    _dag_paths[key] = path
    return path


#: How many versions of DAG files the workers' cache keeps (the least recently used go).
DAG_VERSIONS_KEPT = 64
_dag_paths: dict[tuple[str, str], str] = {}  # (source hash, file name) -> path, this process's


def _forget_old_versions(root: str) -> None:
    """Remove all but the `DAG_VERSIONS_KEPT` most recently used version folders."""
    with os.scandir(root) as entries:
        folders = [(e.stat().st_mtime_ns, e.path) for e in entries if e.is_dir()]
    for _, folder in sorted(folders, reverse=True)[DAG_VERSIONS_KEPT:]:
        shutil.rmtree(folder, ignore_errors=True)


def _run_job(job: dict[str, Any], attempt: str, owner: str) -> dict[str, Any]:
    child = _child_for_this_thread()
    job["context"] = {**job["context"], "log_path": child.fifo}
    token = job.get("process_token") or attempt
    take_rendered(child.fifo)  # left by a try that was killed before it came back
    with _registry_lock:
        _running[token] = (owner, child)
    try:
        reply = _exchange(child, job, attempt, child.log)
    finally:
        with _registry_lock:
            _running.pop(token, None)
    # An Airflow task records its rendered template fields beside its log: ship them back.
    return {**reply, "rendered": take_rendered(child.fifo)}


def _exchange(child: _Child, job: dict[str, Any], attempt: str, reader: int) -> dict[str, Any]:
    """Send the job, ship its output while it runs, and read its outcome."""
    shipper = _LogShipper(attempt, reader)
    assert child.process.stdin is not None and child.process.stdout is not None
    replies = child.process.stdout
    try:
        child.process.stdin.write(encode_message({"job": job}))
        child.process.stdin.flush()
    except OSError:
        child.killed = True
    deadline = None if job["timeout"] is None else _now() + job["timeout"]
    reply = b""
    while not child.killed:
        wait = None if deadline is None else max(0.0, deadline - _now())
        ready, _, _ = select.select([replies.fileno(), reader], [], [], wait)
        if not ready:  # the deadline passed
            child.kill()
            tail = shipper.drain() + _line(f"timed out after {job['timeout']:g} s")
            return _result("failed", f"timed out after {job['timeout']:g} s", shipper, tail)
        if reader in ready:
            shipper.ship()
        if replies.fileno() in ready:
            reply = replies.readline()
            break
    tail = shipper.drain()
    if not reply:
        cancelled = child.killed
        child.kill()
        error = "cancelled" if cancelled else _death(child)
        return _result("failed", error, shipper, tail + _line(error))
    return {**shipper.summary(tail), "outcome": reply.decode(), "pid": os.getpid()}


class _LogShipper:
    """Sends what the FIFO holds to the daemon as `LOG_TOPIC` events, counting the bytes."""

    def __init__(self, attempt: str, reader: int) -> None:
        from distributed import get_worker

        self._worker = get_worker()
        self._attempt = attempt
        self._reader = reader
        self.shipped = 0

    def _read(self) -> bytes:
        try:
            return os.read(self._reader, _CHUNK)
        except BlockingIOError:
            return b""

    def ship(self) -> None:
        data = self._read()
        if data:
            self._worker.log_event(LOG_TOPIC, {"attempt": self._attempt, "data": data})
            self.shipped += len(data)

    def drain(self) -> bytes:
        """What is left in the FIFO once the try ended: it comes back with the outcome."""
        chunks = []
        while chunk := self._read():
            chunks.append(chunk)
        return b"".join(chunks)

    def summary(self, tail: bytes) -> dict[str, Any]:
        return {"log": tail, "shipped": self.shipped}


def _result(status: str, error: str, shipper: _LogShipper, tail: bytes) -> dict[str, Any]:
    outcome = {"status": status, "result_json": None, "error": error, "deferral_json": None}
    return {**shipper.summary(tail), "outcome": json.dumps(outcome), "pid": os.getpid()}


def _failed_before_start(error: str) -> dict[str, Any]:
    outcome = {"status": "failed", "result_json": None, "error": error, "deferral_json": None}
    return {"log": _line(error), "shipped": 0, "outcome": json.dumps(outcome), "pid": os.getpid()}


def _death(child: _Child) -> str:
    from orchestrator.execution.worker_pool import describe_exit

    return f"worker process died: {describe_exit(child.process.wait())}"


def _line(text: str) -> bytes:
    return f"{text}\n".encode()


def _now() -> float:
    return time.monotonic()
