"""Opening SQLite connections the way the store needs them, and refusing damaged files.

Every connection runs in autocommit mode (`isolation_level=None`) so the store writes its own
`BEGIN IMMEDIATE` / `SAVEPOINT` / `COMMIT`, and waits up to 5 s for another process's lock
instead of failing at once. The integrity check runs before anything could write to the
file, so a damaged database is left exactly as it was found.
"""

from __future__ import annotations

import shlex
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from functools import partial
from pathlib import Path
from typing import TypeVar, cast

import aiosqlite
import anyio

from orchestrator.errors import ConfigError, StoreCorruptedError, StoreError

SYNCHRONOUS_LEVELS = ("NORMAL", "FULL", "EXTRA")
BUSY_TIMEOUT_MS = 5000

_CORRUPTION_CODES = frozenset({sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB})

# Binding None cost Python's sqlite3 four times binding an int (350 against 90 ns): not an
# exact int, float or str, it goes through the adaptation protocol, whose fallbacks look up
# `__adapt__` and `__conform__` and raise (and clear) an AttributeError for each before NULL
# is bound. Arming 100,000 sensors binds 800,000 of them, 0.2 s of the writer's 1.65
# (`bench/deferral.py`'s arming replayed). An adapter for NoneType is found at the protocol's
# first step; `{}.get` is a C function that turns None into None, so NULL is still bound
# (190 ns). The registry is the sqlite3 module's, for every connection of the process: for
# them too None binds NULL, as before.
_NOTHING: dict[None, None] = {}
sqlite3.register_adapter(type(None), _NOTHING.get)

Result = TypeVar("Result")


async def run_in_connection_thread(
    connection: aiosqlite.Connection, work: Callable[[sqlite3.Connection], Result]
) -> Result:
    """Run `work` on the raw connection in the connection's own thread, in one round trip.

    Every aiosqlite call is a trip to that thread and back (about 0.1 ms), so a transaction of
    a dozen statements awaited one by one leaves the event loop idle most of the time. aiosqlite
    has no public call for this; `_execute` is the one its own `execute` uses, and the sqlite3
    connection may only be used from that thread.
    """
    execute = cast(Callable[..., Awaitable[Result]], connection._execute)  # untyped upstream
    return await execute(work, connection._conn)


def post_to_connection_thread(
    connection: aiosqlite.Connection, work: Callable[[sqlite3.Connection], object]
) -> None:
    """Queue `work` for the connection's thread and return at once: nothing comes back.

    For work that answers its callers itself: a group commit wakes the event loop once for
    all of its callers, where awaiting `run_in_connection_thread` costs the loop a wake-up to
    resume the awaiting task, and that task then wakes each caller. This is the queue
    `_execute` puts its calls on, in the same order; a call with no future gets no answer,
    and what it raises is dropped, so `work` must catch what it can raise.
    """
    call = partial(work, connection._conn)  # `_conn` raises ValueError once closed
    connection._tx.put_nowait((None, call))


def check_synchronous(level: str) -> str:
    """The `synchronous` level in upper case; `ConfigError` for one SQLite would not take."""
    upper = level.upper()
    if upper not in SYNCHRONOUS_LEVELS:
        raise ConfigError(
            f"synchronous must be NORMAL, FULL or EXTRA, not {level!r}. FULL (the default) "
            "keeps every committed write through a power loss; NORMAL may lose the last ones."
        )
    return upper


@asynccontextmanager
async def connect_writer(db_path: Path, synchronous: str) -> AsyncIterator[aiosqlite.Connection]:
    """The one connection that writes: checked for damage, then switched to WAL."""
    async with _connect(db_path, str(db_path), uri=False) as connection:
        with _damage_reported(db_path):
            await _configure(connection, synchronous)
            await check_not_corrupted(connection, db_path)
            await _enable_wal(connection, db_path)
        # A statement that inserts many rows (`bulkinsert.py`) keeps the pages it changes in a
        # statement journal, to undo it alone if a row fails. Past 64 KiB SQLite spills that
        # journal to a temporary file: arming 100,000 sensors wrote 52,000 pages there
        # (strace), 0.05 s of the writer's CPU. In memory it is at most a transaction's pages
        # (a savepoint's, when a group is replayed batch by batch), and never needed after it.
        await connection.execute("PRAGMA temp_store = MEMORY")
        yield connection


@asynccontextmanager
async def connect_checkpointer(
    db_path: Path, synchronous: str
) -> AsyncIterator[aiosqlite.Connection]:
    """A connection that only checkpoints (`checkpoints.py`): it reads and writes no rows."""
    async with _connect(db_path, str(db_path), uri=False) as connection:
        await _configure(connection, synchronous)
        yield connection


@asynccontextmanager
async def connect_reader(
    db_path: Path, synchronous: str, *, check: bool, immutable: bool = False
) -> AsyncIterator[aiosqlite.Connection]:
    """A read-only connection (`mode=ro`) to the absolute `db_path`: reads can never write.

    `check` runs the integrity check, for when no writer connection has done it already.
    `immutable` reads the main file as it is, without the `-wal` and `-shm` files and without
    locks: only for a file no process writes, whose `-wal` holds nothing (see `sqlite.py`).
    """
    uri = f"{db_path.as_uri()}?mode=ro"  # as_uri percent-encodes `?` and `#` in the path
    if immutable:
        uri += "&immutable=1"
    async with _connect(db_path, uri, uri=True) as connection:
        with _damage_reported(db_path):
            await _configure(connection, synchronous)
            if check:
                await check_not_corrupted(connection, db_path)
        yield connection


@asynccontextmanager
async def _connect(db_path: Path, target: str, *, uri: bool) -> AsyncIterator[aiosqlite.Connection]:
    connecting = aiosqlite.connect(target, uri=uri, isolation_level=None)
    try:
        connection = await connecting
    except sqlite3.Error as error:
        # aiosqlite stops its thread after a failed connect without waiting for it; the thread
        # then answers on this event loop, which may be closed by then. Wait for it here.
        await anyio.to_thread.run_sync(connecting._thread.join)
        raise StoreError(f"The database {db_path} cannot be opened: {error}.") from error
    try:
        yield connection
    finally:
        # Shielded: a cancelled close would leave the connection's thread running.
        with anyio.CancelScope(shield=True):
            await connection.close()


async def _configure(connection: aiosqlite.Connection, synchronous: str) -> None:
    # One round trip for all three. SQLite reads the file header here, so a file that is
    # not a database already fails at this point, before anything could be written to it.
    await connection.executescript(
        f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS};"
        " PRAGMA foreign_keys = ON;"
        f" PRAGMA synchronous = {synchronous};"
    )


async def check_not_corrupted(connection: aiosqlite.Connection, db_path: Path) -> None:
    """Raise `StoreCorruptedError` unless `PRAGMA quick_check` finds the file sound."""
    rows = list(await connection.execute_fetchall("PRAGMA quick_check"))
    problems = [str(row[0]) for row in rows if row[0] != "ok"]
    if problems:
        raise corrupted_error(db_path, "; ".join(problems[:3]))


@contextmanager
def _damage_reported(db_path: Path) -> Iterator[None]:
    """Turn SQLite's errors on opening into ours: damage gets the recovery instructions."""
    try:
        yield
    except sqlite3.DatabaseError as error:
        if is_corruption(error):
            raise corrupted_error(db_path, str(error)) from error
        raise StoreError(f"The database {db_path} cannot be read: {error}.") from error


def is_corruption(error: BaseException) -> bool:
    """True for SQLite's "database disk image is malformed" and "file is not a database"."""
    code = getattr(error, "sqlite_errorcode", None)
    return code is not None and code & 0xFF in _CORRUPTION_CODES


def cannot_open(error: StoreError) -> bool:
    """True when SQLite could not open a file (SQLITE_CANTOPEN) behind this `StoreError`."""
    code = getattr(error.__cause__, "sqlite_errorcode", None)
    return code is not None and code & 0xFF == sqlite3.SQLITE_CANTOPEN


def corrupted_error(db_path: Path | str, detail: str) -> StoreCorruptedError:
    """The error for a damaged database, with both ways to recover spelled out."""
    path = shlex.quote(str(db_path))
    recovered = shlex.quote(f"{db_path}.recovered")
    return StoreCorruptedError(
        f"The database {db_path} is damaged ({detail}), so the orchestrator will not use it "
        "and has written nothing to it. To start fresh, move it aside: "
        f"`mv {path} {shlex.quote(f'{db_path}.corrupt')}` (its history is then forgotten). "
        f'To salvage what can still be read: `sqlite3 {path} ".recover" | sqlite3 {recovered}`, '
        f"then move {recovered} into its place."
    )


async def _enable_wal(connection: aiosqlite.Connection, db_path: Path) -> None:
    async with connection.execute("PRAGMA journal_mode = WAL") as cursor:
        row = await cursor.fetchone()
    if row is None or str(row[0]).lower() != "wal":
        raise StoreError(
            f"The database {db_path} cannot use write-ahead logging (journal mode stays "
            f"{row[0] if row else 'unknown'}); network file systems often cannot. "
            "Put the state directory on a local disk with --state-dir."
        )
