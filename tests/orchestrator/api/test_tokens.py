"""Bearer tokens: their shape, every way a check refuses, and the store keeping only hashes."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from orchestrator.api.tokens import (
    SCOPES,
    allows,
    check_token,
    hash_secret,
    new_token,
    token_json,
)
from orchestrator.errors import AuthError, RunError, StoreError
from orchestrator.store import TokenRecord, WriteBatch, open_store

NOW = 1_800_000_000.0
HOUR = 3600.0


def issue(scope: str = "read", **changes: float | None) -> tuple[dict[str, TokenRecord], str]:
    """A token of `scope` created at NOW, as the registry holds it (by id), and its text."""
    record, text = new_token("ci", scope, now=NOW, expires_at=changes.pop("expires_at", None))
    if changes:
        record = TokenRecord(**{**vars(record), **changes})
    return {record.token_id: record}, text


def refusal(
    records: dict[str, TokenRecord], header: str | None, *, needed: str = "read"
) -> AuthError:
    with pytest.raises(AuthError) as caught:
        check_token(records, header, needed=needed, now=NOW + 1)
    return caught.value


def test_a_token_is_prefixed_id_and_secret_and_only_the_hash_is_kept() -> None:
    record, text = new_token("ci", "trigger", now=NOW, expires_at=NOW + HOUR)
    prefix, token_id, secret = text[:5], text[5:17], text[18:]
    assert prefix == "orch_" and text[17] == "_"
    assert token_id == record.token_id and len(token_id) == 12 and int(token_id, 16) >= 0
    assert len(secret) == 43  # 32 bytes, URL-safe base64 without padding
    assert record.secret_hash == hashlib.sha256(secret.encode()).hexdigest()
    assert secret not in repr(record)
    assert (record.name, record.scope, record.created_at) == ("ci", "trigger", NOW)
    assert (record.expires_at, record.revoked_at) == (NOW + HOUR, None)
    assert "secret_hash" not in token_json(record)
    other, other_text = new_token("ci", "trigger", now=NOW, expires_at=None)
    assert other.token_id != record.token_id and other_text != text


def test_a_good_token_authenticates_with_any_spelling_of_bearer() -> None:
    records, text = issue("trigger")
    for header in (f"Bearer {text}", f"bearer {text}", f"  BEARER   {text}  "):
        assert check_token(records, header, needed="read", now=NOW + 1) is records[text[5:17]]


def test_scopes_are_ordered_read_trigger_admin() -> None:
    assert SCOPES == ("read", "trigger", "admin")
    assert allows("admin", "read") and allows("admin", "admin") and allows("trigger", "read")
    assert not allows("read", "trigger") and not allows("trigger", "admin")
    assert not allows("superuser", "read")
    with pytest.raises(ValueError, match="unknown scope 'write'"):
        allows("admin", "write")


def test_a_missing_header_says_how_to_send_and_make_a_token() -> None:
    records, _ = issue()
    for header in (None, "", "   "):
        error = refusal(records, header)
        assert (error.status, error.code) == (401, "missing_token")
        assert "send `Authorization: Bearer <token>`" in str(error)
        assert "`orchestrator tokens create --scope read`" in str(error)


def test_malformed_unknown_and_wrong_secret_get_one_message() -> None:
    records, text = issue()
    token_id = text[5:17]
    unknown_id = ("0" if token_id[0] != "0" else "1") + token_id[1:]
    wrong_secret = text[:-4] + ("AAAA" if not text.endswith("AAAA") else "BBBB")
    headers = [
        f"Basic {text}",  # another scheme
        "Bearer",
        "Bearer not-a-token",
        f"Bearer {text[:20]}",
        f"Bearer {text.replace('orch_', 'tok_')}",
        f"Bearer {text.replace(token_id, unknown_id)}",
        f"Bearer {wrong_secret}",
    ]
    errors = [refusal(records, header) for header in headers]
    assert {(error.status, error.code) for error in errors} == {(401, "invalid_token")}
    assert len({str(error) for error in errors}) == 1, "the message must not say which part"
    for error in errors:
        assert text[18:] not in str(error) and token_id not in str(error)


def test_a_revoked_token_is_refused_with_when() -> None:
    records, text = issue(revoked_at=NOW - HOUR)
    error = refusal(records, f"Bearer {text}")
    assert (error.status, error.code) == (401, "revoked_token")
    assert str(error).startswith(f"token {text[5:17]} was revoked at 2027-01-15 07:00:00 UTC")
    assert text[18:] not in str(error)


def test_an_expired_token_is_refused_from_its_expiry_on() -> None:
    records, text = issue(expires_at=NOW + HOUR)
    header = f"Bearer {text}"
    assert check_token(records, header, needed="read", now=NOW + HOUR - 0.001)
    with pytest.raises(AuthError) as caught:
        check_token(records, header, needed="read", now=NOW + HOUR)
    assert (caught.value.status, caught.value.code) == (401, "expired_token")
    assert "expired at 2027-01-15 09:00:00 UTC" in str(caught.value)


def test_too_small_a_scope_is_403_naming_both_scopes() -> None:
    records, text = issue("read")
    error = refusal(records, f"Bearer {text}", needed="trigger")
    assert (error.status, error.code) == (403, "insufficient_scope")
    assert "needs a token of scope trigger or above" in str(error)
    assert "has scope read" in str(error)
    assert "--scope trigger" in str(error) and text[18:] not in str(error)
    records, text = issue("trigger")
    assert refusal(records, f"Bearer {text}", needed="admin").code == "insufficient_scope"


@pytest.mark.parametrize(
    ("name", "scope", "expires_at", "message"),
    [
        ("ci", "write", None, "unknown token scope 'write'; choose read"),
        ("two\nlines", "read", None, "a token name must be printable text on one line"),
        ("x" * 101, "read", None, "of at most 100 characters"),
        ("ci", "read", NOW, "a token must expire in the future"),
    ],
    ids=["scope", "newline", "long name", "past expiry"],
)
def test_bad_token_requests_are_refused(
    name: str, scope: str, expires_at: float | None, message: str
) -> None:
    with pytest.raises(RunError, match=message):
        new_token(name, scope, now=NOW, expires_at=expires_at)


# -- in the store --------------------------------------------------------------------------------


async def test_tokens_round_trip_through_the_store_and_revoking_keeps_the_first_moment(
    tmp_path: Path,
) -> None:
    first, _ = new_token("ci", "read", now=NOW, expires_at=NOW + HOUR)
    second, _ = new_token("", "admin", now=NOW + 1, expires_at=None)
    async with open_store(tmp_path) as store:
        batch = WriteBatch()
        batch.put_token(second)
        batch.put_token(first)
        await store.commit(batch)
        assert await store.list_tokens() == [first, second]
        for at in (NOW + 5, NOW + 9):  # the second revoke is fine and changes nothing
            batch = WriteBatch()
            batch.revoke_token(first.token_id, at)
            await store.commit(batch)
        (revoked, kept) = await store.list_tokens()
    assert revoked == TokenRecord(**{**vars(first), "revoked_at": NOW + 5})
    assert kept == second


async def test_revoking_an_unknown_token_and_reusing_an_id_fail_their_batch(
    tmp_path: Path,
) -> None:
    record, _ = new_token("ci", "read", now=NOW, expires_at=None)
    async with open_store(tmp_path) as store:
        batch = WriteBatch()
        batch.put_token(record)
        await store.commit(batch)
        batch = WriteBatch()
        batch.revoke_token("ffffffffffff", NOW)
        with pytest.raises(StoreError, match="there is no API token with id 'ffffffffffff'"):
            await store.commit(batch)
        batch = WriteBatch()
        batch.put_token(TokenRecord(**{**vars(record), "name": "again"}))
        with pytest.raises(StoreError, match=f"a token with id {record.token_id} already exists"):
            await store.commit(batch)
        assert await store.list_tokens() == [record]


async def test_the_database_files_never_hold_the_token_text(tmp_path: Path) -> None:
    texts = []
    async with open_store(tmp_path) as store:
        for scope in SCOPES:
            record, text = new_token("ci", scope, now=NOW, expires_at=None)
            batch = WriteBatch()
            batch.put_token(record)
            await store.commit(batch)
            texts.append(text)
        # While open: the write-ahead log holds the new rows.
        assert_nowhere(tmp_path, texts)
    assert_nowhere(tmp_path, texts)
    everything = b"".join(path.read_bytes() for path in tmp_path.rglob("*") if path.is_file())
    assert hash_secret(texts[0][18:]).encode() in everything  # the hash is what is kept


def assert_nowhere(folder: Path, texts: list[str]) -> None:
    files = [path for path in folder.rglob("*") if path.is_file()]
    assert any(path.name == "orchestrator.db" for path in files)
    for path in files:
        content = path.read_bytes()
        for text in texts:
            assert text[18:].encode() not in content, f"a token's secret is in {path}"
            assert text.encode() not in content
