"""How the writes of the HTTP API become SQL: bearer tokens and webhook definitions.

Kept apart from `writes.py` (task and run state) because these rows belong to the API, not
to runs; `writes.apply_op` finds these handlers through `API_HANDLERS`. Callers (the API
registry, the CLI) check for unknown ids and duplicate names first, to answer with a list of
what exists; the errors here are the last guard, for a race between two writers.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

from orchestrator.errors import StoreError
from orchestrator.store.apirows import TOKEN_COLUMNS, WEBHOOK_COLUMNS, token_params, webhook_params
from orchestrator.store.records import TokenRecord, WebhookRecord

Connection = sqlite3.Connection

_INSERT_TOKEN = f"INSERT INTO api_tokens ({TOKEN_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)"
# Revoking twice keeps the first moment: that is when the token stopped working.
_REVOKE_TOKEN = "UPDATE api_tokens SET revoked_at = COALESCE(revoked_at, ?) WHERE token_id = ?"
_WEBHOOK_VALUES = "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
_INSERT_WEBHOOK = f"INSERT INTO webhooks ({WEBHOOK_COLUMNS}) {_WEBHOOK_VALUES}"
_REPLACE_WEBHOOK = f"INSERT OR REPLACE INTO webhooks ({WEBHOOK_COLUMNS}) {_WEBHOOK_VALUES}"


def _put_token(connection: Connection, token: TokenRecord) -> None:
    try:
        connection.execute(_INSERT_TOKEN, token_params(token))
    except sqlite3.IntegrityError as error:
        # 48 random bits make this next to impossible; say so rather than overwrite a token.
        raise StoreError(
            f"a token with id {token.token_id} already exists; create the token again "
            "(a new id is drawn each time)"
        ) from error


def _revoke_token(connection: Connection, token_id: str, at: float) -> None:
    cursor = connection.execute(_REVOKE_TOKEN, (at, token_id))
    if cursor.rowcount != 1:
        raise StoreError(
            f"there is no API token with id {token_id!r} to revoke; "
            "`orchestrator tokens list` shows the ids"
        )


def _put_webhook(connection: Connection, webhook: WebhookRecord, replace: bool) -> None:
    sql = _REPLACE_WEBHOOK if replace else _INSERT_WEBHOOK
    try:
        connection.execute(sql, webhook_params(webhook))
    except sqlite3.IntegrityError as error:
        raise StoreError(
            f"webhook {webhook.name} exists; remove it first or use --replace"
        ) from error


def _delete_webhook(connection: Connection, name: str) -> None:
    cursor = connection.execute("DELETE FROM webhooks WHERE name = ?", (name,))
    if cursor.rowcount != 1:
        raise StoreError(
            f"there is no webhook {name!r} to remove; `orchestrator webhooks list` shows them"
        )


API_HANDLERS: dict[str, Callable[..., None]] = {
    "put_token": _put_token,
    "revoke_token": _revoke_token,
    "put_webhook": _put_webhook,
    "delete_webhook": _delete_webhook,
}
