"""The processes of a try: found and stopped however the try ends (Linux; a no-op elsewhere).

A try's code may start processes that leave its worker's process group (`setsid`) or lose
their parent (a double fork), so killing the group is not enough. Three things find them all:

- The worker is a *child subreaper* (`PR_SET_CHILD_SUBREAPER`): an orphan below it is
  re-parented to it rather than to init, so while the worker lives, every process a try
  started is one of its descendants. After each try the worker kills them
  (`stop_descendants`); the engine does the same before it kills a worker
  (`stop_process_tree`), freezing the worker first so nothing slips out meanwhile.
- Each try's processes carry `ORCHESTRATOR_TRY_TOKEN` in their environment, a value derived
  from the state directory and the try (`try_token`), unique to it and known before it
  starts. When the worker itself died (a crash, or with the daemon under `kill -9`), its
  orphans went to init; `stop_token_holders` finds them by that token in
  `/proc/PID/environ` — which a recycled pid cannot carry, so it never hits a stranger.
- Waits for processes to end use pidfds, never a polling loop.

A process that clears its own environment *and* leaves the group escapes the token scan; one
that only does one of the two is still found.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import select
import signal
import sys
import time
from collections.abc import Callable, Iterable
from contextlib import suppress
from pathlib import Path

#: The environment variable that marks every process of one try.
TRY_TOKEN_VARIABLE = "ORCHESTRATOR_TRY_TOKEN"
_PR_SET_CHILD_SUBREAPER = 36  # from <linux/prctl.h>
#: How long processes sent SIGKILL get to be gone (only a process stuck in the kernel needs it).
KILL_WAIT = 10.0
#: Rounds of "find, kill" before giving up on a process tree that keeps forking.
_MAX_ROUNDS = 50


def try_token(state_identity: str, run_id: str, task_id: str, map_index: int, tries: int) -> str:
    """The token of one try: the same for the engine that starts it and the one that recovers it.

    `state_identity` (the state directory's real path) keeps two daemons on one machine, each
    with a run `r1`, from taking each other's processes for their own.
    """
    parts = (state_identity, run_id, task_id, str(map_index), str(tries))
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:32]


def become_subreaper() -> None:
    """Make this process the one its descendants' orphans are re-parented to."""
    if sys.platform == "linux":
        ctypes.CDLL(None).prctl(_PR_SET_CHILD_SUBREAPER, 1)


def _live_parents() -> dict[int, int]:
    """pid -> parent pid of every live process (zombies left out: they run nothing)."""
    parents: dict[int, int] = {}
    for name in os.listdir("/proc"):
        if name.isdecimal():
            with suppress(OSError, IndexError, ValueError):
                # The command name, in parentheses, may itself hold spaces and parentheses.
                fields = Path(f"/proc/{name}/stat").read_text().rsplit(")", 1)[1].split()
                if fields[0] not in ("Z", "X"):
                    parents[int(name)] = int(fields[1])
    return parents


def descendants(pid: int) -> list[int]:
    """The live processes below `pid`, children first."""
    children: dict[int, list[int]] = {}
    for child, parent in _live_parents().items():
        children.setdefault(parent, []).append(child)
    found: list[int] = []
    pending = [pid]
    while pending:
        below = children.get(pending.pop(), [])
        found.extend(below)
        pending.extend(below)
    return found


def stop_descendants() -> None:
    """In a worker, after a try: kill every process below this one, and reap them."""
    if sys.platform == "linux" and _has_children():
        _kill_below(os.getpid(), after_each_round=_reap_children)
        _reap_children()


def _has_children() -> bool:
    """Whether this process has a child, running or a zombie: one `waitpid`, no file read.

    For a subreaper this answers for every descendant: an orphan below it is re-parented to
    it, and the process that left it is its child (a zombie) until reaped. Most tries start
    no process, and scanning /proc after each was most of a short try's cost; reading each
    thread's `children` file instead still cost two opens and a listdir (about 30 µs).
    A zombie this reaps was a child: True all the same, and its orphans are ours by now.
    """
    try:
        os.waitpid(-1, os.WNOHANG)
    except ChildProcessError:
        return False
    return True


def stop_process_tree(pid: int) -> None:
    """From the engine: kill a worker, its process group, and every process below it.

    The worker is stopped first: frozen, it can neither start processes nor reap the ones
    killed, so its orphans stay below it (it is their subreaper) until all are found.
    """
    with suppress(ProcessLookupError, PermissionError):
        os.kill(pid, signal.SIGSTOP)
    if sys.platform == "linux":
        _kill_below(pid, after_each_round=lambda: None)
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def _kill_below(pid: int, *, after_each_round: Callable[[], None]) -> None:
    """Kill what runs below `pid` until nothing does (orphans of the killed come up to it)."""
    for _ in range(_MAX_ROUNDS):
        alive = descendants(pid)
        if not alive:
            return
        _kill_all(alive)
        wait_gone(alive)
        after_each_round()


def stop_token_holders(tokens: Iterable[str]) -> list[int]:
    """Kill every process whose environment carries one of these try tokens; return their pids.

    Returns once they are gone (or after `KILL_WAIT`): a task may run again only then.
    """
    wanted = {f"{TRY_TOKEN_VARIABLE}={token}".encode() for token in tokens}
    if not wanted or sys.platform != "linux":
        return []
    killed: list[int] = []
    for _ in range(_MAX_ROUNDS):  # a holder may fork while it is being killed
        holders = [pid for pid in _live_parents() if wanted & _environment(pid)]
        if not holders:
            break
        _kill_all(holders)
        wait_gone(holders)
        killed.extend(pid for pid in holders if pid not in killed)
    return killed


def _environment(pid: int) -> set[bytes]:
    try:
        return set(Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"))
    except OSError:  # gone, or another user's
        return set()


def _kill_all(pids: Iterable[int]) -> None:
    for pid in pids:
        with suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


def wait_gone(pids: Iterable[int], timeout: float = KILL_WAIT) -> None:
    """Return once each of these processes has exited (a zombie counts), or after `timeout`."""
    pidfds: list[int] = []
    for pid in pids:
        with suppress(OSError):  # gone already
            pidfds.append(os.pidfd_open(pid))
    try:
        poller = select.poll()
        for pidfd in pidfds:
            poller.register(pidfd, select.POLLIN)
        deadline = time.monotonic() + timeout
        remaining = len(pidfds)
        while remaining and (left := deadline - time.monotonic()) > 0:
            events = poller.poll(left * 1000)
            for pidfd, _ in events:
                poller.unregister(pidfd)
            remaining -= len(events)
    finally:
        for pidfd in pidfds:
            os.close(pidfd)


def _reap_children() -> None:
    """Collect the exit status of every child that has exited (ours to reap, as subreaper)."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
