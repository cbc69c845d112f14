"""The schema, as numbered migrations, and the code that brings a database up to date.

`PRAGMA user_version` holds the number of the last migration applied. Opening the store for
writing applies the pending ones in one `BEGIN IMMEDIATE` transaction, so a crash mid-way (or a
second process opening at the same moment) leaves the schema either before or after, never in
between. A migration is never edited once released: a change is a new migration at the end.

Times are REAL seconds since the epoch; states are the string values of the enums in
`orchestrator.state`; JSON columns hold UTF-8 JSON text (never pickle).
"""

from __future__ import annotations

import sqlite3
from typing import NamedTuple

import aiosqlite
import anyio

from orchestrator.errors import StoreError


class Migration(NamedTuple):
    """One step of the schema: its number (from 1, no gaps), what it does, and its SQL."""

    number: int
    description: str
    sql: str


_INITIAL_SCHEMA = """
CREATE TABLE dags (
    dag_id      TEXT PRIMARY KEY,
    fileloc     TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    is_paused   INTEGER NOT NULL DEFAULT 0,
    updated_at  REAL NOT NULL
);

CREATE TABLE import_errors (
    fileloc     TEXT NOT NULL,
    line        INTEGER,
    message     TEXT NOT NULL,
    recorded_at REAL NOT NULL
);

-- NULL dedup keys are distinct in a UNIQUE constraint, so only keyed runs are deduplicated.
CREATE TABLE runs (
    run_id       TEXT PRIMARY KEY,
    dag_id       TEXT NOT NULL,
    state        TEXT NOT NULL,
    conf         TEXT NOT NULL DEFAULT '{}',
    run_type     TEXT NOT NULL,
    dedup_key    TEXT,
    logical_date REAL,
    queued_at    REAL NOT NULL,
    started_at   REAL,
    ended_at     REAL,
    UNIQUE (dag_id, dedup_key)
);
CREATE INDEX runs_by_dag ON runs (dag_id, queued_at);
CREATE INDEX runs_by_state ON runs (state, queued_at);
CREATE INDEX runs_by_queued_at ON runs (queued_at);

CREATE TABLE task_instances (
    run_id        TEXT NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
    task_id       TEXT NOT NULL,
    map_index     INTEGER NOT NULL,
    state         TEXT NOT NULL,
    try_number    INTEGER NOT NULL,
    max_tries     INTEGER NOT NULL,
    pool          TEXT NOT NULL,
    priority      INTEGER NOT NULL,
    queued_at     REAL,
    started_at    REAL,
    ended_at      REAL,
    next_retry_at REAL,
    error         TEXT,
    PRIMARY KEY (run_id, task_id, map_index)
);

CREATE TABLE task_tries (
    run_id      TEXT NOT NULL,
    task_id     TEXT NOT NULL,
    map_index   INTEGER NOT NULL,
    try_number  INTEGER NOT NULL,
    state       TEXT NOT NULL,
    started_at  REAL NOT NULL,
    ended_at    REAL,
    log_path    TEXT NOT NULL,
    error       TEXT,
    pid         INTEGER,
    PRIMARY KEY (run_id, task_id, map_index, try_number),
    FOREIGN KEY (run_id, task_id, map_index)
        REFERENCES task_instances (run_id, task_id, map_index) ON DELETE CASCADE
);

CREATE TABLE task_results (
    run_id    TEXT NOT NULL,
    task_id   TEXT NOT NULL,
    map_index INTEGER NOT NULL,
    value     TEXT NOT NULL,
    size      INTEGER NOT NULL,
    PRIMARY KEY (run_id, task_id, map_index),
    FOREIGN KEY (run_id, task_id, map_index)
        REFERENCES task_instances (run_id, task_id, map_index) ON DELETE CASCADE
);

-- For the triggerer and run triggers: an event that arrived for a DAG, and the run it started.
-- UNIQUE (dag_id, dedup_key) makes a redelivered event a no-op: one event, one run.
CREATE TABLE events (
    event_id    INTEGER PRIMARY KEY,
    dag_id      TEXT NOT NULL,
    dedup_key   TEXT NOT NULL,
    payload     TEXT NOT NULL,
    received_at REAL NOT NULL,
    run_id      TEXT REFERENCES runs (run_id) ON DELETE SET NULL,
    UNIQUE (dag_id, dedup_key)
);
CREATE INDEX events_by_run ON events (run_id);

-- For the triggerer: a trigger a deferred task instance waits on, rebuilt at start from its
-- classpath and JSON kwargs. The task instance columns are NULL for a DAG's run trigger.
CREATE TABLE triggers (
    trigger_id INTEGER PRIMARY KEY,
    classpath  TEXT NOT NULL,
    kwargs     TEXT NOT NULL,
    created_at REAL NOT NULL,
    run_id     TEXT,
    task_id    TEXT,
    map_index  INTEGER,
    FOREIGN KEY (run_id, task_id, map_index)
        REFERENCES task_instances (run_id, task_id, map_index) ON DELETE CASCADE
);
CREATE INDEX triggers_by_task_instance ON triggers (run_id, task_id, map_index);
"""

# Deferral: how a deferred task instance resumes (`next_call`, JSON: the resume target, its
# kwargs, what a timeout does, and the event once it fired), and per trigger its deadline and
# the cursor it saved (an S3 listing position, ...). One trigger row per task instance at most.
_DEFERRAL = """
ALTER TABLE task_instances ADD COLUMN next_call TEXT;
ALTER TABLE triggers ADD COLUMN timeout_at REAL;
ALTER TABLE triggers ADD COLUMN cursor TEXT;
DROP INDEX triggers_by_task_instance;
CREATE UNIQUE INDEX triggers_by_task_instance ON triggers (run_id, task_id, map_index);
"""

# Runs that start themselves. Scheduled runs keep their data interval's end beside its start
# (`logical_date`). Events say which of the DAG's run triggers saw them; an event whose run_id
# is NULL waits for its batch window or debounce. `run_sources` holds each DAG's run triggers
# as the daemon hosts them (a separate table rather than `triggers` rows with NULL task
# columns, as migration 1 planned: a run trigger belongs to a DAG and has its own key).
_RUN_TRIGGERS = """
ALTER TABLE runs ADD COLUMN data_interval_end REAL;
CREATE INDEX runs_by_logical_date ON runs (dag_id, logical_date) WHERE logical_date IS NOT NULL;
ALTER TABLE events ADD COLUMN source TEXT NOT NULL DEFAULT '';
CREATE INDEX events_pending ON events (dag_id, event_id) WHERE run_id IS NULL;
CREATE INDEX events_by_received_at ON events (received_at);
CREATE TABLE run_sources (
    dag_id    TEXT NOT NULL,
    source    TEXT NOT NULL,
    classpath TEXT NOT NULL,
    kwargs    TEXT NOT NULL,
    armed_at  REAL NOT NULL,
    cursor    TEXT,
    error     TEXT,
    PRIMARY KEY (dag_id, source)
);
"""

# The HTTP API: bearer tokens (only the SHA-256 of each secret, so a copy of the database
# grants nothing) and webhook definitions (where the daemon reads each secret, never the
# secret itself). `filters` and `conf_map` are JSON.
_API = """
CREATE TABLE api_tokens (
    token_id    TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    scope       TEXT NOT NULL,
    secret_hash TEXT NOT NULL,
    created_at  REAL NOT NULL,
    expires_at  REAL,
    revoked_at  REAL
);
CREATE TABLE webhooks (
    name             TEXT PRIMARY KEY,
    dag_id           TEXT NOT NULL,
    kind             TEXT NOT NULL,
    secret_env       TEXT,
    secret_file      TEXT,
    filters          TEXT NOT NULL DEFAULT '[]',
    conf_map         TEXT NOT NULL DEFAULT '{}',
    signature_header TEXT NOT NULL,
    delivery_header  TEXT NOT NULL,
    rate             REAL,
    created_at       REAL NOT NULL
);
"""

# Tries cut short by the daemon's death cost no retry; this counts them per task instance, so
# that a task which itself kills the daemon ends failed after `max_interrupted_tries`.
_INTERRUPTED_TRIES = """
ALTER TABLE task_instances ADD COLUMN interrupted_tries INTEGER NOT NULL DEFAULT 0;
"""

# The web UI's reads at size (10,000 runs, 100,000 task instances): a page of recent failures
# reads task instances of one state newest end first, and the Events page pages one DAG's
# events by id. (Runs by DAG and by state are indexed since migration 1.)
_UI_READS = """
CREATE INDEX task_instances_by_state ON task_instances (state, ended_at);
CREATE INDEX events_by_dag ON events (dag_id, event_id);
CREATE INDEX events_by_source ON events (dag_id, source, received_at);
"""

# Alerts: an outbox. A row is written in the same transaction as the state change that causes
# it (one row per alert and channel), and marked sent once its channel took it, so a crash
# between the commit and the send loses nothing. `notifier` is the JSON classpath and kwargs of
# a notifier attached in a DAG file (NULL: a channel of orchestrator.toml); neither holds a
# secret, only where the daemon reads it.
_ALERTS = """
CREATE TABLE alerts (
    alert_id    TEXT PRIMARY KEY,
    created_at  REAL NOT NULL,
    event       TEXT NOT NULL,
    action      TEXT NOT NULL,
    channel     TEXT NOT NULL,
    notifier    TEXT,
    dag_id      TEXT,
    run_id      TEXT,
    task_id     TEXT,
    map_index   INTEGER,
    try_number  INTEGER,
    summary     TEXT NOT NULL DEFAULT '',
    state       TEXT NOT NULL,
    attempts    INTEGER NOT NULL DEFAULT 0,
    last_error  TEXT,
    sent_at     REAL
);
CREATE INDEX alerts_pending ON alerts (channel, created_at) WHERE state = 'pending';
CREATE INDEX alerts_by_created_at ON alerts (created_at);
"""

# Airflow's Variables: set with `orchestrator variables set`, read by `Variable.get` in DAG
# files and tasks (after `AIRFLOW_VAR_*` from the environment).
_VARIABLES = """
CREATE TABLE variables (
    key         TEXT PRIMARY KEY,
    value       TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    updated_at  REAL NOT NULL
);
"""

# Task instances by state, for ended ones only: the UI's only read of it (a state's newest
# ends) asks for `ended_at IS NOT NULL`, and every instance moved three or four times through
# the whole index before it ended (none, scheduled, queued, running), 100,000 entries made for
# 100,000 waiting sensors. Now an instance enters it once, as it ends.
_ENDED_BY_STATE = """
DROP INDEX task_instances_by_state;
CREATE INDEX task_instances_by_state ON task_instances (state, ended_at)
    WHERE ended_at IS NOT NULL;
"""

MIGRATIONS: list[Migration] = [
    Migration(1, "DAGs, runs, task instances, tries, results, events, triggers", _INITIAL_SCHEMA),
    Migration(2, "deferral: task instances' next call, trigger timeouts and cursors", _DEFERRAL),
    Migration(3, "run triggers: data intervals, event sources, run sources", _RUN_TRIGGERS),
    Migration(4, "HTTP API: bearer tokens and webhook definitions", _API),
    Migration(5, "interrupted tries: counted per task instance", _INTERRUPTED_TRIES),
    Migration(6, "web UI reads: task instances by state, events by DAG and source", _UI_READS),
    Migration(7, "alerts: an outbox of alerts and their delivery", _ALERTS),
    Migration(8, "variables: Airflow's Variables, kept in the store", _VARIABLES),
    Migration(9, "task instances by state: ended ones only", _ENDED_BY_STATE),
]

LATEST_VERSION = MIGRATIONS[-1].number


def split_statements(sql: str) -> list[str]:
    """Cut a script into single statements (`execute` takes one at a time).

    `executescript` would do it for us, but it commits any open transaction first, which
    would break the one-transaction guarantee. `complete_statement` keeps a `;` inside a
    string literal or a trigger body from ending a statement early.
    """
    statements: list[str] = []
    pending = ""
    for piece in sql.split(";"):
        pending += piece + ";"
        if sqlite3.complete_statement(pending):
            statement = pending.strip()
            if _has_code(statement):
                statements.append(statement)
            pending = ""
    return statements


def _has_code(statement: str) -> bool:
    """False for a statement made only of `--` comments and whitespace."""
    lines = (line.split("--", 1)[0].strip() for line in statement.splitlines())
    return any(line and line != ";" for line in lines)


def check_version(version: int, db_path: str, *, readonly: bool) -> None:
    """Refuse a schema this code cannot use: a newer one, or (read-only) one not yet migrated."""
    if version > LATEST_VERSION:
        raise StoreError(
            f"The database {db_path} was created by a newer orchestrator "
            f"(schema {version}, this one knows {LATEST_VERSION}). Upgrade orchestrator, "
            "or point --state-dir at another directory."
        )
    if readonly and version < LATEST_VERSION:
        raise StoreError(
            f"The database {db_path} has schema {version} and this orchestrator needs "
            f"{LATEST_VERSION}. Run a command that writes (`orchestrator run` or "
            "`orchestrator daemon`) once to migrate it, then read it again."
        )


async def read_version(connection: aiosqlite.Connection) -> int:
    """The number of the last migration applied to the database (0 for a new file)."""
    async with connection.execute("PRAGMA user_version") as cursor:
        row = await cursor.fetchone()
    return int(row[0]) if row else 0


async def migrate(connection: aiosqlite.Connection, db_path: str) -> int:
    """Apply every pending migration in one transaction; return the schema version reached.

    The version is read once outside the write lock so an up-to-date database (the usual
    case) never takes it, then again inside, in case another process migrated meanwhile.
    """
    version = await read_version(connection)
    check_version(version, db_path, readonly=False)
    if version == LATEST_VERSION:
        return version
    # Shielded: once the write lock is taken, finish (or roll back) before honouring a cancel.
    with anyio.CancelScope(shield=True):
        await connection.execute("BEGIN IMMEDIATE")
        try:
            version = await read_version(connection)
            check_version(version, db_path, readonly=False)
            await _apply_pending(connection, version, db_path)
            await connection.execute("COMMIT")
        except Exception:
            await connection.execute("ROLLBACK")
            raise
    return LATEST_VERSION


async def _apply_pending(connection: aiosqlite.Connection, version: int, db_path: str) -> None:
    """Run the migrations after `version`, inside the caller's transaction."""
    for migration in MIGRATIONS[version:]:
        try:
            for statement in split_statements(migration.sql):
                await connection.execute(statement)
        except sqlite3.Error as error:
            raise StoreError(
                f"Migration {migration.number} ({migration.description}) failed on {db_path}: "
                f"{error}. The database was left unchanged; if it is not an orchestrator "
                "database, point --state-dir at another directory."
            ) from error
    # PRAGMA takes no parameters; LATEST_VERSION is our own integer, not user input.
    await connection.execute(f"PRAGMA user_version = {LATEST_VERSION}")
