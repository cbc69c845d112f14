"""Records to rows and back for the HTTP API's tables: bearer tokens and webhook definitions.

A webhook's filters and conf mapping are JSON, read through `jsonvalues.RowDamage`: a value
that cannot be read marks the webhook damaged (it is listed, and takes no delivery).
"""

from __future__ import annotations

from typing import Any

from orchestrator.store.jsonvalues import TEXT_MAPPING, TEXT_PAIRS, RowDamage
from orchestrator.store.records import TokenRecord, WebhookRecord
from orchestrator.store.rows import Row, encode_json

TOKEN_COLUMNS = "token_id, name, scope, secret_hash, created_at, expires_at, revoked_at"
WEBHOOK_COLUMNS = (
    "name, dag_id, kind, secret_env, secret_file, filters, conf_map, signature_header,"
    " delivery_header, rate, created_at"
)


def token_params(token: TokenRecord) -> tuple[Any, ...]:
    return (
        token.token_id,
        token.name,
        token.scope,
        token.secret_hash,
        token.created_at,
        token.expires_at,
        token.revoked_at,
    )


def token_from_row(row: Row) -> TokenRecord:
    token_id, name, scope, secret_hash, created_at, expires_at, revoked_at = row
    return TokenRecord(
        token_id=token_id,
        name=name,
        scope=scope,
        secret_hash=secret_hash,
        created_at=created_at,
        expires_at=expires_at,
        revoked_at=revoked_at,
    )


def webhook_params(webhook: WebhookRecord) -> tuple[Any, ...]:
    what = f"the {{}} of webhook {webhook.name}"
    return (
        webhook.name,
        webhook.dag_id,
        webhook.kind,
        webhook.secret_env,
        webhook.secret_file,
        encode_json([list(pair) for pair in webhook.filters], what=what.format("filters")),
        encode_json(webhook.conf_map, what=what.format("conf mapping")),
        webhook.signature_header,
        webhook.delivery_header,
        webhook.rate,
        webhook.created_at,
    )


def webhook_from_row(row: Row) -> WebhookRecord:
    name, dag_id, kind, secret_env, secret_file, filters, conf_map = row[:7]
    damage = RowDamage()
    pairs = damage.decode(filters, "filters", TEXT_PAIRS, [])
    return WebhookRecord(
        name=name,
        dag_id=dag_id,
        kind=kind,
        secret_env=secret_env,
        secret_file=secret_file,
        filters=[(path, pattern) for path, pattern in pairs],
        conf_map=damage.decode(conf_map, "conf_map", TEXT_MAPPING, {}),
        signature_header=row[7],
        delivery_header=row[8],
        rate=row[9],
        created_at=row[10],
        damaged=damage.reason,
    )
