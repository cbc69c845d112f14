"""Bearer tokens for the HTTP API: creating them, and checking the one a request sends.

A token reads `orch_<token_id>_<secret>`. The id (12 hex digits) is public: lists show it and
`orchestrator tokens revoke` takes it. The secret (32 random bytes) is shown once, when the
token is created; the store keeps only its SHA-256, so a copy of the database grants nothing.
A plain hash is enough (no slow KDF): the secret is random, not a password someone chose.

Scopes are ordered, `read` < `trigger` < `admin`: a token may do what its scope names and
everything below it.

Refusals never say which part was wrong for an unknown id or a wrong secret (so a caller
cannot learn which ids exist), and never quote the token.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import re
import secrets
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from orchestrator.errors import AuthError, RunError
from orchestrator.store.records import TokenRecord

SCOPES = ("read", "trigger", "admin")
TOKEN_PREFIX = "orch_"
NAME_MAX_CHARS = 100
#: The longest a token may last: 100 years. Every expiry is checked against it before it is
#: stored, because a moment past year 9999 (or an infinite one) cannot be shown as a date, and
#: one such row would make every token listing fail.
MAX_EXPIRES_IN = 100 * 365 * 86400

_TOKEN = re.compile(r"orch_([0-9a-f]{12})_([A-Za-z0-9_-]{16,128})")
# Compared against when the id is unknown, so that case costs the same as a wrong secret.
_NO_HASH = "0" * 64
_CREATE_HINT = "create one with `orchestrator tokens create --scope read`"


def allows(granted: str, needed: str) -> bool:
    """True if a token of scope `granted` may do what needs scope `needed`."""
    if needed not in SCOPES:
        raise ValueError(f"unknown scope {needed!r}; scopes are {', '.join(SCOPES)}")
    return granted in SCOPES and SCOPES.index(granted) >= SCOPES.index(needed)


def check_scope(scope: str) -> str:
    """`scope` itself if it is one of SCOPES; `RunError` naming them otherwise."""
    if scope not in SCOPES:
        raise RunError(
            f"unknown token scope {scope!r}; choose read (look only), trigger (also start "
            "runs) or admin (everything)"
        )
    return scope


def check_name(name: str) -> str:
    """A token's name: free text for people, on one line, at most NAME_MAX_CHARS."""
    if len(name) > NAME_MAX_CHARS or any(not char.isprintable() for char in name):
        raise RunError(
            f"a token name must be printable text on one line of at most {NAME_MAX_CHARS} "
            "characters, such as 'ci' or 'grafana'"
        )
    return name


def check_expires_in(value: object) -> float | None:
    """`expires_in` (seconds from now) as a float, or None for never; `RunError` otherwise.

    The one check for every way a token is created (the API, the control socket, the CLI).
    """
    if value is None:
        return None
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise RunError("`expires_in` must be a number of seconds, or left out for never")
    # Compared before any float conversion: an int of 400 digits does not fit in a float.
    if not 0 < value <= MAX_EXPIRES_IN or not math.isfinite(value):
        raise RunError(
            f"`expires_in` must be a number of seconds above 0 and at most {MAX_EXPIRES_IN} "
            "(100 years), or left out for never"
        )
    return float(value)


def hash_secret(secret: str) -> str:
    """The hex SHA-256 of a token's secret part: what the store keeps."""
    return hashlib.sha256(secret.encode()).hexdigest()


def new_token(
    name: str, scope: str, *, now: float, expires_at: float | None
) -> tuple[TokenRecord, str]:
    """A new token: the record to store and the token's text, to show once and then forget."""
    check_scope(scope)
    check_name(name)
    if expires_at is not None and expires_at <= now:
        raise RunError("a token must expire in the future; give a positive duration or never")
    if expires_at is not None and not expires_at <= now + MAX_EXPIRES_IN:
        # The last guard before the store: nothing is stored that a listing cannot show.
        raise RunError(f"a token may last at most {MAX_EXPIRES_IN} seconds (100 years)")
    token_id = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    record = TokenRecord(
        token_id=token_id,
        name=name,
        scope=scope,
        secret_hash=hash_secret(secret),
        created_at=now,
        expires_at=expires_at,
    )
    return record, f"{TOKEN_PREFIX}{token_id}_{secret}"


def check_token(
    records: Mapping[str, TokenRecord], authorization: str | None, *, needed: str, now: float
) -> TokenRecord:
    """The token an `Authorization: Bearer <token>` header names, if it grants `needed`.

    Raises `AuthError`: 401 `missing_token`, `invalid_token` (malformed, unknown id or wrong
    secret: one message for all three), `revoked_token`, `expired_token`; 403
    `insufficient_scope` when the token is good but its scope too small.
    """
    if authorization is None or not authorization.strip():
        raise AuthError(
            f"this request needs a bearer token: send `Authorization: Bearer <token>`; "
            f"{_CREATE_HINT}",
            code="missing_token",
        )
    record = _verified(records, authorization)
    _check_usable(record, now)
    if not allows(record.scope, needed):
        raise AuthError(
            f"this request needs a token of scope {needed} or above, and token "
            f"{record.token_id} has scope {record.scope}; create one with "
            f"`orchestrator tokens create --scope {needed}`",
            status=403,
            code="insufficient_scope",
        )
    return record


def _verified(records: Mapping[str, TokenRecord], authorization: str) -> TokenRecord:
    """The record whose secret the header holds; one `invalid_token` error for every failure."""
    scheme, _, text = authorization.strip().partition(" ")
    match = _TOKEN.fullmatch(text.strip()) if scheme.lower() == "bearer" else None
    token_id, secret = match.groups() if match else ("", "")
    record = records.get(token_id)
    expected = record.secret_hash if record is not None else _NO_HASH
    if not hmac.compare_digest(expected, hash_secret(secret)) or record is None:
        raise AuthError(
            "the bearer token is not valid: send `Authorization: Bearer orch_<id>_<secret>` "
            f"with a token as it was shown when created; {_CREATE_HINT}",
            code="invalid_token",
        )
    return record


def _check_usable(record: TokenRecord, now: float) -> None:
    if record.revoked_at is not None:
        raise AuthError(
            f"token {record.token_id} was revoked at {format_utc(record.revoked_at)}; "
            f"{_CREATE_HINT}",
            code="revoked_token",
        )
    if record.expires_at is not None and now >= record.expires_at:
        raise AuthError(
            f"token {record.token_id} expired at {format_utc(record.expires_at)}; {_CREATE_HINT}",
            code="expired_token",
        )


def format_utc(moment: float) -> str:
    """`2026-01-31 12:00:00 UTC`: a moment anyone can read, whatever their time zone."""
    return datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def token_json(record: TokenRecord) -> dict[str, Any]:
    """A token as lists show it: everything but the secret's hash."""
    return {
        "token_id": record.token_id,
        "name": record.name,
        "scope": record.scope,
        "created_at": record.created_at,
        "expires_at": record.expires_at,
        "revoked_at": record.revoked_at,
    }
