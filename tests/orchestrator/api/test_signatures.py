"""Webhook signatures: the published vectors, tampering, rotation, bad headers and replays."""

from __future__ import annotations

import base64

import pytest

from orchestrator.api.signatures import (
    decode_standard_secret,
    sign_github,
    sign_hmac,
    sign_standard,
    verify_github,
    verify_hmac,
    verify_standard,
)
from orchestrator.errors import SignatureError

# GitHub's documented example ("Validating webhook deliveries").
GITHUB_SECRET = b"It's a Secret to Everybody"
GITHUB_BODY = b"Hello, World!"
GITHUB_SIGNATURE = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"

# The Standard Webhooks reference vector (standard-webhooks/standard-webhooks,
# libraries/python/tests/test_webhooks.py, test_sign_function).
STANDARD_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
STANDARD_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
STANDARD_TIMESTAMP = 1614265330
STANDARD_BODY = b'{"test": 2432232314}'
STANDARD_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="

OTHER_SECRET = b"another secret, not the sender's"


def tampered(body: bytes) -> bytes:
    """`body` with its last byte changed."""
    return body[:-1] + bytes([body[-1] ^ 1])


def refusal(call: object, *args: object, **kwargs: object) -> SignatureError:
    """The SignatureError `call` raises, after checking what every refusal has in common."""
    assert callable(call)
    with pytest.raises(SignatureError) as caught:
        call(*args, **kwargs)
    assert (caught.value.status, caught.value.code) == (401, "bad_signature")
    return caught.value


# -- GitHub ---------------------------------------------------------------------------------------


def test_github_documented_vector_signs_and_verifies() -> None:
    assert sign_github(GITHUB_SECRET, GITHUB_BODY) == GITHUB_SIGNATURE
    verify_github([GITHUB_SECRET], GITHUB_BODY, GITHUB_SIGNATURE)


def test_github_uppercase_hex_is_accepted() -> None:
    # Hex is case-insensitive: the same bytes, so the same signature.
    verify_github([GITHUB_SECRET], GITHUB_BODY, "sha256=" + GITHUB_SIGNATURE[7:].upper())


def test_github_refuses_a_body_changed_by_one_byte() -> None:
    error = refusal(verify_github, [GITHUB_SECRET], tampered(GITHUB_BODY), GITHUB_SIGNATURE)
    assert str(error) == (
        "the signature does not match the body (wrong secret, or the body was changed)"
    )


def test_github_refuses_another_secret() -> None:
    signature = sign_github(OTHER_SECRET, GITHUB_BODY)
    error = refusal(verify_github, [GITHUB_SECRET], GITHUB_BODY, signature)
    assert "does not match" in str(error)


def test_github_accepts_either_secret_during_a_rotation() -> None:
    old, new = b"old secret", b"new secret"
    for signer in (old, new):
        verify_github([old, new], GITHUB_BODY, sign_github(signer, GITHUB_BODY))
    refusal(verify_github, [old, new], GITHUB_BODY, sign_github(OTHER_SECRET, GITHUB_BODY))


@pytest.mark.parametrize("header", [None, ""])
def test_github_missing_header(header: str | None) -> None:
    error = refusal(verify_github, [GITHUB_SECRET], GITHUB_BODY, header)
    assert str(error) == "the X-Hub-Signature-256 header is missing"


@pytest.mark.parametrize(
    "header",
    [
        GITHUB_SIGNATURE[7:],  # no prefix
        "sha1=" + GITHUB_SIGNATURE[7:],  # X-Hub-Signature's old algorithm
        GITHUB_SIGNATURE[:-1],  # 63 digits
        GITHUB_SIGNATURE + "0",  # 65 digits
        GITHUB_SIGNATURE[:-1] + "g",  # not hex
        "sha256=",
        "sha256=" + base64.b64encode(bytes(32)).decode(),  # base64, not hex
    ],
)
def test_github_malformed_header(header: str) -> None:
    error = refusal(verify_github, [GITHUB_SECRET], GITHUB_BODY, header)
    assert str(error) == "the X-Hub-Signature-256 header must look like sha256=<64 hex digits>"


# -- plain HMAC -----------------------------------------------------------------------------------


def test_plain_hmac_signs_bare_hex_and_accepts_an_optional_prefix() -> None:
    signature = sign_hmac(GITHUB_SECRET, GITHUB_BODY)
    assert signature == GITHUB_SIGNATURE[7:]
    for header in (signature, "sha256=" + signature, signature.upper()):
        verify_hmac([GITHUB_SECRET], GITHUB_BODY, header, header_name="X-Signature")


def test_plain_hmac_refusals_name_the_configured_header() -> None:
    good = sign_hmac(GITHUB_SECRET, GITHUB_BODY)
    missing = refusal(verify_hmac, [GITHUB_SECRET], GITHUB_BODY, None, header_name="X-Sig")
    assert str(missing) == "the X-Sig header is missing"
    malformed = refusal(verify_hmac, [GITHUB_SECRET], GITHUB_BODY, "md5=abc", header_name="X-Sig")
    assert str(malformed).startswith("the X-Sig header must hold the hex HMAC-SHA256 of the body")
    changed = refusal(
        verify_hmac, [GITHUB_SECRET], tampered(GITHUB_BODY), good, header_name="X-Sig"
    )
    assert "does not match" in str(changed)


def test_plain_hmac_accepts_either_secret_during_a_rotation() -> None:
    secrets = [b"old secret", b"new secret"]
    for secret in secrets:
        verify_hmac(secrets, GITHUB_BODY, sign_hmac(secret, GITHUB_BODY), header_name="X-Sig")


# -- Standard Webhooks ----------------------------------------------------------------------------


def standard_key() -> bytes:
    return decode_standard_secret(STANDARD_SECRET)


def verify_reference(**changes: object) -> None:
    """Verify the reference delivery at its own timestamp, with some of its parts changed."""
    delivery: dict[str, object] = {
        "msg_id": STANDARD_ID,
        "timestamp": str(STANDARD_TIMESTAMP),
        "signature": STANDARD_SIGNATURE,
        "body": STANDARD_BODY,
        "now": float(STANDARD_TIMESTAMP),
    }
    keys = changes.pop("keys", [standard_key()])
    delivery.update(changes)
    verify_standard(keys, **delivery)  # type: ignore[arg-type]


def test_standard_reference_vector_signs_and_verifies() -> None:
    key = standard_key()
    assert sign_standard(key, STANDARD_ID, STANDARD_TIMESTAMP, STANDARD_BODY) == STANDARD_SIGNATURE
    verify_reference()


def test_standard_secret_padding_is_optional_as_in_the_reference_libraries() -> None:
    padded = base64.b64encode(b"a 10-byte!").decode()
    assert padded.endswith("==")
    assert decode_standard_secret("whsec_" + padded.rstrip("=")) == b"a 10-byte!"


def test_standard_secret_prefix_is_optional() -> None:
    assert decode_standard_secret(STANDARD_SECRET.removeprefix("whsec_")) == standard_key()
    assert len(standard_key()) == 24


@pytest.mark.parametrize("text", ["whsec_not base64!", "whsec_", "", "whsec_abcde"])
def test_standard_secret_that_is_not_base64_is_refused_without_quoting_it(text: str) -> None:
    with pytest.raises(ValueError, match="not valid base64") as caught:
        decode_standard_secret(text)
    if text.removeprefix("whsec_"):
        assert text.removeprefix("whsec_") not in str(caught.value)


def test_standard_refuses_a_body_changed_by_one_byte() -> None:
    with pytest.raises(SignatureError, match="does not match the body"):
        verify_reference(body=tampered(STANDARD_BODY))


def test_standard_signature_covers_the_id_and_timestamp() -> None:
    with pytest.raises(SignatureError, match="does not match"):
        verify_reference(msg_id="msg_another")
    with pytest.raises(SignatureError, match="does not match"):
        verify_reference(timestamp=str(STANDARD_TIMESTAMP + 1))


def test_standard_refuses_another_key() -> None:
    with pytest.raises(SignatureError, match="does not match"):
        verify_reference(keys=[OTHER_SECRET])


def test_standard_accepts_either_of_our_keys_during_a_rotation() -> None:
    verify_reference(keys=[OTHER_SECRET, standard_key()])


def test_standard_accepts_any_v1_entry_and_ignores_other_versions() -> None:
    # The sender rotates: it signs with its old and new keys; v1a entries are another scheme.
    old = sign_standard(OTHER_SECRET, STANDARD_ID, STANDARD_TIMESTAMP, STANDARD_BODY)
    other_version = "v1a," + STANDARD_SIGNATURE.removeprefix("v1,")
    verify_reference(signature=f"{old} {other_version} {STANDARD_SIGNATURE}")
    verify_reference(signature=f"{STANDARD_SIGNATURE} {old}")


def test_standard_entries_of_other_versions_alone_do_not_pass() -> None:
    only_v2 = "v2," + STANDARD_SIGNATURE.removeprefix("v1,")
    with pytest.raises(SignatureError, match="has no v1 signature"):
        verify_reference(signature=f"{only_v2} v1a,abc")


@pytest.mark.parametrize(
    "signature",
    [
        STANDARD_SIGNATURE.removeprefix("v1,"),  # no version
        "v1," + STANDARD_SIGNATURE[3:-2],  # truncated base64
        "v1,!!!not base64!!!",
        "v1," + base64.b64encode(bytes(16)).decode(),  # a digest of the wrong size
        "v1,",
    ],
)
def test_standard_malformed_signature_header(signature: str) -> None:
    with pytest.raises(SignatureError, match="must hold space-separated entries like v1,"):
        verify_reference(signature=signature)


@pytest.mark.parametrize(
    ("header", "message"),
    [
        ("msg_id", "the webhook-id header is missing"),
        ("timestamp", "the webhook-timestamp header is missing"),
        ("signature", "the webhook-signature header is missing"),
    ],
)
@pytest.mark.parametrize("value", [None, ""])
def test_standard_missing_headers(header: str, message: str, value: str | None) -> None:
    with pytest.raises(SignatureError) as caught:
        verify_reference(**{header: value})
    assert str(caught.value) == message


@pytest.mark.parametrize("timestamp", ["soon", "1614265330.5", "-1614265330", "1e9", "0x60"])
def test_standard_timestamp_must_be_whole_seconds(timestamp: str) -> None:
    with pytest.raises(SignatureError, match="must be a whole number of seconds"):
        verify_reference(timestamp=timestamp)


def test_standard_refuses_a_stale_delivery() -> None:
    with pytest.raises(SignatureError) as caught:
        verify_reference(now=STANDARD_TIMESTAMP + 412.0)
    assert str(caught.value) == (
        "the webhook-timestamp is 412 s old; deliveries older than 300 s are refused"
        " (a replay, or the sender's clock is wrong)"
    )


def test_standard_refuses_a_delivery_from_the_future() -> None:
    with pytest.raises(SignatureError, match=r"is 301 s in the future; .* more than 300 s ahead"):
        verify_reference(now=STANDARD_TIMESTAMP - 301.0)


def test_standard_tolerance_bounds_are_inclusive_and_configurable() -> None:
    verify_reference(now=STANDARD_TIMESTAMP + 300.0)
    verify_reference(now=STANDARD_TIMESTAMP - 300.0)
    verify_reference(now=STANDARD_TIMESTAMP + 3000.0, tolerance=3600.0)
    with pytest.raises(SignatureError, match="older than 60 s"):
        verify_reference(now=STANDARD_TIMESTAMP + 61.0, tolerance=60.0)


def test_standard_checks_the_timestamp_before_the_signature() -> None:
    # A stale replay is named as such even when it is correctly signed.
    with pytest.raises(SignatureError, match="s old"):
        verify_reference(now=STANDARD_TIMESTAMP + 10_000.0, signature="v1,AAAA")


# -- secrets never leak ---------------------------------------------------------------------------


def every_refusal() -> list[SignatureError]:
    """One refusal of each kind, from verifiers holding the reference secrets."""
    github, standard = [GITHUB_SECRET], [standard_key()]
    wrong_standard = sign_standard(OTHER_SECRET, STANDARD_ID, STANDARD_TIMESTAMP, STANDARD_BODY)
    now = float(STANDARD_TIMESTAMP)
    standard_calls = [
        {"msg_id": STANDARD_ID, "timestamp": "1614265330", "signature": wrong_standard},
        {"msg_id": STANDARD_ID, "timestamp": "1", "signature": wrong_standard},
        {"msg_id": STANDARD_ID, "timestamp": "x", "signature": wrong_standard},
        {"msg_id": STANDARD_ID, "timestamp": "1614265330", "signature": "v1,x"},
    ]
    return [
        refusal(verify_github, github, GITHUB_BODY, sign_github(OTHER_SECRET, GITHUB_BODY)),
        refusal(verify_github, github, GITHUB_BODY, "sha256=zz"),
        refusal(verify_hmac, github, GITHUB_BODY, "00" * 32, header_name="X-Sig"),
        *(
            refusal(verify_standard, standard, body=STANDARD_BODY, now=now, **call)
            for call in standard_calls
        ),
    ]


def test_no_refusal_holds_a_secret_or_the_expected_signature() -> None:
    forbidden = [
        GITHUB_SECRET.decode(),
        GITHUB_SIGNATURE[7:],
        STANDARD_SECRET.removeprefix("whsec_"),
        STANDARD_SIGNATURE.removeprefix("v1,"),
        standard_key().hex(),
    ]
    messages = [str(error) for error in every_refusal()]
    assert len(messages) == 7
    for message in messages:
        assert not any(secret.lower() in message.lower() for secret in forbidden), message


# -- misuse ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("secrets", [[], [b""], [GITHUB_SECRET, b""]])
def test_a_webhook_without_a_usable_secret_is_a_configuration_error(secrets: list[bytes]) -> None:
    with pytest.raises(ValueError, match="at least one secret, and none may be empty"):
        verify_github(secrets, GITHUB_BODY, GITHUB_SIGNATURE)
    with pytest.raises(ValueError, match="at least one secret"):
        verify_reference(keys=secrets)


def test_a_bare_secret_instead_of_a_list_is_refused() -> None:
    with pytest.raises(TypeError, match="list of bytes"):
        verify_github(GITHUB_SECRET, GITHUB_BODY, GITHUB_SIGNATURE)  # type: ignore[arg-type]
