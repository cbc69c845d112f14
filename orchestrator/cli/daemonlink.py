"""A command's choice between the running daemon and the store.

While a daemon runs it is the only writer of the store, so a command that changes state asks it
over its control socket, and the daemon acts at once. With no daemon, the command does the work
itself while holding the state directory's lock: a daemon starting meanwhile cannot load the
store half-way through the write, and would miss nothing. `trigger`, `backfill`, `dags pause`
and `triggers list` use these.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from orchestrator.authoring.dag import DAG
    from orchestrator.config import Settings
    from orchestrator.daemon.state_lock import Holder
    from orchestrator.loading.dagbag import DagBag

Prepared = TypeVar("Prepared")
Result = TypeVar("Result")

_DAEMON_COMMAND = "orchestrator daemon"  # what the daemon writes into the lock file


def is_daemon(holder: Holder) -> bool:
    """True if the lock's holder is a daemon (or did not say what it is: assume one)."""
    return holder.command is None or holder.command.startswith(_DAEMON_COMMAND)


def running_daemon(settings: Settings) -> Holder | None:
    """The daemon that holds the state directory now, or None when no daemon runs."""
    from orchestrator.daemon.state_lock import read_holder

    holder = read_holder(settings.state_dir)
    return holder if holder is not None and is_daemon(holder) else None


def ask_daemon(settings: Settings, holder: Holder, request: dict[str, Any]) -> dict[str, Any]:
    """Send `request` to the daemon that `holder` describes and return its result.

    Raises `DaemonError` with the daemon's own message when it refuses; a holder that is not a
    daemon (a foreground `orchestrator run`) or a daemon not listening yet is an error too.
    """
    from orchestrator.daemon.control import (
        DaemonError,
        DaemonUnavailableError,
        control_path,
        request_sync,
    )
    from orchestrator.errors import RunError

    if not is_daemon(holder):
        raise RunError(
            f"the state directory {settings.state_dir} is in use by {holder.describe()}, "
            "not by a daemon; wait for it to end (or stop it), then try again"
        )
    try:
        return request_sync(control_path(settings.state_dir), request)
    except DaemonUnavailableError:
        pid = f"pid {holder.pid}" if holder.pid is not None else "pid unknown"
        raise DaemonError(f"the daemon ({pid}) is starting or not answering; try again") from None


def daemon_or_locally(
    settings: Settings,
    *,
    command: str,
    ask: Callable[[Holder], Result],
    prepare: Callable[[], Prepared],
    locally: Callable[[Prepared], Result],
) -> Result:
    """`ask(holder)` the running daemon; with none, `locally(prepare())` under the state lock.

    `prepare` (loading DAG files, which may be slow) runs before the lock is taken, so a daemon
    starting meanwhile is not refused for it. If a daemon took the lock in between, it is asked.
    `command` names this process in the lock file, for the messages of those who find it held.
    """
    from orchestrator.daemon.state_lock import StateDirLock, StateDirLockedError, read_holder

    holder = read_holder(settings.state_dir)
    if holder is None:
        prepared = prepare()
        try:
            lock = StateDirLock.acquire(settings.state_dir, command=command)
        except StateDirLockedError as error:
            holder = error.holder
        else:
            with lock:
                return locally(prepared)
    return ask(holder)


def load_dag(settings: Settings, dag_id: str) -> tuple[DagBag, DAG]:
    """The DAGs folder and the DAG `dag_id` in it; `DagNotFoundError` lists the known ones."""
    from orchestrator.cli.dags import load_bag_quietly

    bag = load_bag_quietly(settings)
    return bag, bag.get(dag_id)
