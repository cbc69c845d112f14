"""Standard Webhooks signing: the pure half, used by the API (to verify) and alerts (to sign).

Kept in the core so the alerts layer, below the API, signs with the very function the API
verifies with: a delivery we send and one we accept cannot drift apart.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac

_WHSEC_PREFIX = "whsec_"


def decode_standard_secret(text: str) -> bytes:
    """The key of a Standard Webhooks secret: base64, after an optional `whsec_` prefix.

    The `=` padding may be left out, as the reference libraries allow.
    """
    encoded = text.strip().removeprefix(_WHSEC_PREFIX)
    encoded += "=" * (-len(encoded) % 4)
    try:
        key = base64.b64decode(encoded, validate=True)
    except binascii.Error:
        key = b""
    if not key:
        # The text is a secret: the message describes it without quoting any of it.
        raise ValueError(
            "the Standard Webhooks secret is not valid base64 after its optional whsec_ prefix;"
            " copy it again from the sender's settings"
        )
    return key


def sign_standard(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` entry for one delivery: `v1,<base64 HMAC-SHA256>`."""
    return "v1," + base64.b64encode(standard_digest(key, msg_id, timestamp, body)).decode()


def standard_digest(key: bytes, msg_id: str, timestamp: int, body: bytes) -> bytes:
    """The HMAC-SHA256 Standard Webhooks signs: `<id>.<timestamp>.<body>`."""
    return hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
