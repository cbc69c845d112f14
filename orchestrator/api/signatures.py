"""Webhook signatures: GitHub's `X-Hub-Signature-256`, Standard Webhooks, and plain HMAC.

Every check runs over the *raw* body, byte for byte as it arrived: a body parsed and
re-serialised is a different body (key order, spaces, escapes) and would never verify.
Digests are compared with `hmac.compare_digest`, so the time a refusal takes says nothing
about how many bytes of a forged signature were right.

Secrets come as a sequence: during a rotation on our side both the old and the new secret are
configured and either may sign. A failure raises `SignatureError` (401) whose message says what
was wrong with the request; it never holds a secret or the signature we expected, because it is
sent back to whoever made the request.

Hex digests are read case-insensitively: `ABCD` and `abcd` are the same bytes, and refusing a
sender that prints uppercase hex would be a support ticket, not a security gain.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections.abc import Sequence

from orchestrator.errors import SignatureError
from orchestrator.signing import (  # re-exported: the API's callers import them here
    decode_standard_secret as decode_standard_secret,
)
from orchestrator.signing import sign_standard as sign_standard
from orchestrator.signing import standard_digest

GITHUB_HEADER = "X-Hub-Signature-256"
_HEX_DIGEST = re.compile(r"[0-9a-fA-F]{64}")
_MISMATCH = "the signature does not match the body (wrong secret, or the body was changed)"
_TIMESTAMP = re.compile(r"[0-9]{1,15}")  # whole seconds; 15 digits is far past year 9999
_SIGNATURE_BYTES = hashlib.sha256().digest_size


# -- GitHub ---------------------------------------------------------------------------------------


def sign_github(secret: bytes, body: bytes) -> str:
    """The `X-Hub-Signature-256` value GitHub would send for `body`: `sha256=<hex>`."""
    return "sha256=" + sign_hmac(secret, body)


def verify_github(secrets: Sequence[bytes], body: bytes, header: str | None) -> None:
    """Raise `SignatureError` unless `header` is `sha256=<hex HMAC-SHA256>` of `body`."""
    _check_secrets(secrets)
    if not header:
        raise SignatureError(f"the {GITHUB_HEADER} header is missing")
    prefix, _, hex_digest = header.strip().partition("=")
    if prefix != "sha256" or not _HEX_DIGEST.fullmatch(hex_digest):
        raise SignatureError(f"the {GITHUB_HEADER} header must look like sha256=<64 hex digits>")
    _verify_digest(secrets, body, bytes.fromhex(hex_digest))


# -- plain HMAC -----------------------------------------------------------------------------------


def sign_hmac(secret: bytes, body: bytes) -> str:
    """The bare hex HMAC-SHA256 of `body`, as a simple sender puts it in its header."""
    return _digest(secret, body).hex()


def verify_hmac(
    secrets: Sequence[bytes], body: bytes, header: str | None, *, header_name: str
) -> None:
    """Raise `SignatureError` unless `header` is the hex HMAC-SHA256 of `body`.

    For senders with no scheme of their own: the header holds 64 hex digits, optionally
    prefixed `sha256=` (many senders copy GitHub's spelling). `header_name` only names the
    header in error messages.
    """
    _check_secrets(secrets)
    if not header:
        raise SignatureError(f"the {header_name} header is missing")
    hex_digest = header.strip().removeprefix("sha256=")
    if not _HEX_DIGEST.fullmatch(hex_digest):
        raise SignatureError(
            f"the {header_name} header must hold the hex HMAC-SHA256 of the body:"
            " 64 hex digits, optionally prefixed sha256="
        )
    _verify_digest(secrets, body, bytes.fromhex(hex_digest))


# -- Standard Webhooks ----------------------------------------------------------------------------


def verify_standard(
    keys: Sequence[bytes],
    *,
    msg_id: str | None,
    timestamp: str | None,
    signature: str | None,
    body: bytes,
    now: float,
    tolerance: float = 300.0,
) -> None:
    """Raise `SignatureError` unless the delivery is signed by one of `keys` and fresh.

    The timestamp is signed with the body, so a captured delivery cannot be replayed after
    `tolerance` seconds; one too far in the future is refused too, or a sender could sign
    deliveries that stay replayable for as long as it likes. The `webhook-signature` header
    holds space-separated `version,signature` entries (the sender may rotate keys and send
    several); entries of other versions are ignored and any `v1` match passes.
    """
    _check_secrets(keys)
    if not msg_id:
        raise SignatureError("the webhook-id header is missing")
    seconds = _fresh_timestamp(timestamp, now=now, tolerance=tolerance)
    candidates = _v1_signatures(signature)
    for key in keys:
        expected = standard_digest(key, msg_id, seconds, body)
        if _matches_any(expected, candidates):
            return
    raise SignatureError(_MISMATCH)


def _fresh_timestamp(header: str | None, *, now: float, tolerance: float) -> int:
    """The `webhook-timestamp` as seconds, refused when missing, malformed or out of tolerance."""
    if not header:
        raise SignatureError("the webhook-timestamp header is missing")
    if not _TIMESTAMP.fullmatch(header.strip()):
        raise SignatureError(
            "the webhook-timestamp header must be a whole number of seconds since the epoch"
        )
    seconds = int(header)
    age = now - seconds
    if age > tolerance:
        raise SignatureError(
            f"the webhook-timestamp is {age:.0f} s old; deliveries older than {tolerance:g} s"
            " are refused (a replay, or the sender's clock is wrong)"
        )
    if -age > tolerance:
        raise SignatureError(
            f"the webhook-timestamp is {-age:.0f} s in the future; deliveries more than"
            f" {tolerance:g} s ahead are refused (the sender's clock is wrong)"
        )
    return seconds


def _v1_signatures(header: str | None) -> list[bytes]:
    """The decoded `v1` signatures of a `webhook-signature` header; other versions skipped."""
    if not header:
        raise SignatureError("the webhook-signature header is missing")
    found: list[bytes] = []
    for entry in header.split():
        version, _, encoded = entry.partition(",")
        if version == "v1" and len(digest := _decode_base64(encoded)) == _SIGNATURE_BYTES:
            found.append(digest)
    if not found:
        raise SignatureError(
            "the webhook-signature header has no v1 signature; it must hold space-separated"
            " entries like v1,<base64 of the HMAC-SHA256>"
        )
    return found


def _decode_base64(text: str) -> bytes:
    """`text` decoded, or empty bytes when it is not base64 (the entry is then ignored)."""
    try:
        return base64.b64decode(text, validate=True)
    except binascii.Error:
        return b""


# -- shared ---------------------------------------------------------------------------------------


def _digest(secret: bytes, content: bytes) -> bytes:
    return hmac.new(secret, content, hashlib.sha256).digest()


def _verify_digest(secrets: Sequence[bytes], body: bytes, received: bytes) -> None:
    """Raise unless one of `secrets` signs `body` as `received`."""
    if not any(hmac.compare_digest(_digest(secret, body), received) for secret in secrets):
        raise SignatureError(_MISMATCH)


def _matches_any(expected: bytes, candidates: Sequence[bytes]) -> bool:
    # Every candidate is compared, so the time taken does not say which entry matched.
    matched = False
    for candidate in candidates:
        matched |= hmac.compare_digest(expected, candidate)
    return matched


def _check_secrets(secrets: Sequence[bytes]) -> None:
    """Refuse a misconfigured webhook: with no secret, or an empty one, anyone could sign."""
    if isinstance(secrets, bytes | str):
        # A bare bytes is a sequence of ints: iterating it would "verify" against each byte.
        raise TypeError("pass the webhook secrets as a list of bytes, not one bare value")
    if not secrets or not all(secrets):
        raise ValueError("a signed webhook needs at least one secret, and none may be empty")
