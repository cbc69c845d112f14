"""`POST /hooks/{name}`: a signed delivery starts a run, answered only once the run is committed.

The order of checks is the security story:

1. the body is read up to `api_max_body` (413 beyond, before it is all buffered);
2. the signature is verified over the raw bytes, in constant time, before anything in the
   body is looked at: an unsigned request costs one HMAC and is never parsed. An unknown
   name is verified too, against a secret nobody has, and every refusal up to here is the
   same 401 with the same sentence, so a caller cannot tell which names exist (the reason
   is in the daemon's log, for the webhook's owner);
3. only then the webhook's rate limit and the DAG's (429), the JSON depth limit (400), and the
   webhook's filter (a delivery it does not want gets a 200 that says so, and no run);
4. the delivery id is the run's dedup key: the run and an event row commit in one
   transaction, and a retried delivery (the sender never saw our answer) gets the run the
   first one started instead of a second run. GitHub deliveries must carry their id;
5. a body signature does not cover the delivery id, so the same signed body again within
   `webhook_replay_window` seconds is a replay whatever id it carries: it gets the first run
   (`ReplayGuard`).
"""

from __future__ import annotations

import logging
import secrets as random_secrets
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from starlette.responses import JSONResponse

from orchestrator.api.answers import JsonAnswer
from orchestrator.api.endpoints import Endpoint
from orchestrator.api.inputs import body_bytes, path_text
from orchestrator.api.limits import parse_json
from orchestrator.api.problems import code_of
from orchestrator.api.runroutes import refuse_while_stopping
from orchestrator.api.signatures import verify_github, verify_hmac, verify_standard
from orchestrator.api.webhookconfig import build_conf, first_mismatch
from orchestrator.crashpoints import crashpoint
from orchestrator.errors import ApiError, DuplicateRunError, PayloadError, SignatureError
from orchestrator.store.records import EventRecord, WebhookRecord

if TYPE_CHECKING:
    from starlette.datastructures import Headers
    from starlette.requests import Request

    from orchestrator.api.context import ApiContext

logger = logging.getLogger("orchestrator.api.hooks")

#: The one answer to every delivery refused before its signature verified.
REFUSED = (
    "the delivery is not signed with this webhook's secret (a signature header missing or "
    "malformed, a stale timestamp, another secret, or a changed body); the receiver's log "
    "says which"
)
_FORM = "application/x-www-form-urlencoded"
# Stands in for an unknown name: verified like a GitHub webhook, against a key nobody has.
_UNKNOWN = WebhookRecord(name="", dag_id="", kind="github", secret_env="UNKNOWN")
_UNKNOWN_KEYS = [random_secrets.token_bytes(32)]


async def receive_webhook(api: ApiContext, request: Request) -> JSONResponse:
    """Answer the delivery, and count it by its outcome (a refusal by its error's code)."""
    try:
        answer, outcome = await _receive(api, request)
    except Exception as error:
        api.metrics.webhook_delivery("refused", code_of(error))
        raise
    api.metrics.webhook_delivery(outcome)
    return answer


async def _receive(api: ApiContext, request: Request) -> tuple[JSONResponse, str]:
    hook = api.registry.webhook(path_text(request, "name"))
    body = await body_bytes(api, request)
    delivery = await _verify(api, hook, request.headers, body)
    assert hook is not None  # _verify refused the unknown name
    _refuse_if_damaged(hook)
    api.limit(f"hook:{hook.name}", hook.rate or api.settings.webhook_rate, f"webhook {hook.name}")
    payload = _payload(api, request.headers, body)
    mismatch = first_mismatch(hook, payload, request.headers)
    if mismatch is not None:
        return JsonAnswer({"run_id": None, "created": False, "ignored": mismatch}), "ignored"
    refuse_while_stopping(api)
    api.limit(
        f"dag:{hook.dag_id}", api.settings.dag_trigger_rate, f"starting runs of {hook.dag_id!r}"
    )
    if hook.kind == "standard" or not api.settings.webhook_replay_window:
        answer, _ = await _start_run(api, hook, request.headers, payload, delivery)
        return answer, _outcome(answer)
    answer = await _start_once(api, hook, request.headers, payload, delivery, body)
    return answer, _outcome(answer)


def _outcome(answer: JSONResponse) -> str:
    """A run created (201), or the run an earlier delivery of the same event created (200)."""
    return "created" if answer.status_code == 201 else "duplicate"


def _refuse_if_damaged(hook: WebhookRecord) -> None:
    """A definition that cannot be read takes no delivery: its filters or conf are unknown.

    Only a sender that proved it holds the secret learns it (a 503: try again once fixed).
    """
    if hook.damaged is None:
        return
    logger.error(
        "webhook %s refused a delivery: its definition is damaged (%s)", hook.name, hook.damaged
    )
    raise ApiError(
        f"webhook {hook.name}'s stored definition cannot be read ({hook.damaged}); its owner "
        "must add it again (`orchestrator webhooks add ... --replace`)",
        status=503,
        code="webhook_damaged",
    )


async def _verify(
    api: ApiContext, hook: WebhookRecord | None, headers: Headers, body: bytes
) -> str | None:
    """Check the signature; return the delivery id the sender gave (None if it gave none)."""
    keys = _UNKNOWN_KEYS if hook is None else await _secrets(api, hook)
    try:
        delivery = _check_signature(api, hook or _UNKNOWN, keys, headers, body)
    except SignatureError as error:
        if hook is not None:
            logger.info("webhook %s refused a delivery: %s", hook.name, error)
        raise SignatureError(REFUSED) from None
    if hook is None:  # cannot happen (nobody has the key); refused all the same
        raise SignatureError(REFUSED)
    if hook.kind == "github" and not delivery:
        raise ApiError(
            "a GitHub delivery must carry its X-GitHub-Delivery header: it is the delivery's "
            "id, which makes a resent delivery start no second run",
            code="missing_delivery_id",
        )
    return delivery


def _check_signature(
    api: ApiContext, hook: WebhookRecord, keys: list[bytes], headers: Headers, body: bytes
) -> str | None:
    if hook.kind == "github":
        verify_github(keys, body, headers.get("x-hub-signature-256"))
        return headers.get("x-github-delivery")
    if hook.kind == "standard":
        verify_standard(
            keys,
            msg_id=headers.get("webhook-id"),
            timestamp=headers.get("webhook-timestamp"),
            signature=headers.get("webhook-signature"),
            body=body,
            now=api.clock.now(),
        )
        return headers.get("webhook-id")
    verify_hmac(keys, body, headers.get(hook.signature_header), header_name=hook.signature_header)
    return headers.get(hook.delivery_header) if hook.delivery_header else None


async def _secrets(api: ApiContext, hook: WebhookRecord) -> list[bytes]:
    """The webhook's secrets; a secret the daemon cannot read is a 503, logged for the owner."""
    try:
        secrets = await api.registry.secrets(hook.name)
        if not secrets:
            raise ValueError("its secret is empty")
        return secrets
    except Exception as error:
        logger.error("webhook %s cannot verify deliveries: %s", hook.name, error)
        raise ApiError(
            "this webhook cannot verify deliveries right now (the receiver's secret is not "
            "configured); its owner has been told in the daemon's log",
            status=503,
            code="webhook_misconfigured",
        ) from None


def _payload(api: ApiContext, headers: Headers, body: bytes) -> Any:
    """The JSON payload; GitHub's form-encoded deliveries carry it in the `payload` field."""
    media_type = headers.get("content-type", "").partition(";")[0].strip().lower()
    if media_type == _FORM:
        fields = parse_qs(body.decode("utf-8", errors="replace"))
        if "payload" not in fields:
            raise PayloadError("a form-encoded delivery must have a `payload` field")
        body = fields["payload"][0].encode()
    if not body.strip():
        return {}
    return parse_json(body, max_depth=api.settings.api_max_json_depth)


async def _start_once(
    api: ApiContext,
    hook: WebhookRecord,
    headers: Headers,
    payload: Any,
    delivery: str | None,
    body: bytes,
) -> JSONResponse:
    """Start the run unless the same signed body started one within the replay window."""
    key = api.replays.key(hook.name, body)
    earlier = await api.replays.claim(key, api.settings.webhook_replay_window)
    if earlier is not None:
        logger.info("webhook %s: delivery %s replays an earlier body", hook.name, delivery)
        return _answer(hook, earlier, delivery, created=False)
    try:
        answer, run_id = await _start_run(api, hook, headers, payload, delivery)
    except BaseException:
        api.replays.release(key)
        raise
    api.replays.settle(key, run_id)
    return answer


async def _start_run(
    api: ApiContext, hook: WebhookRecord, headers: Headers, payload: Any, delivery: str | None
) -> tuple[JSONResponse, str]:
    conf = build_conf(hook, payload, headers, delivery)
    key = f"webhook:{hook.name}:{delivery}" if delivery else None
    event = _event(api, hook, headers, delivery, key)
    received_at = api.clock.now()
    try:
        run_id = await api.engine.trigger(
            hook.dag_id, conf, run_type="webhook", dedup_key=key, event=event
        )
    except DuplicateRunError as error:
        existing = error.existing_run_id
        return _answer(hook, existing, delivery, created=False), existing
    crashpoint("webhook_committed")
    api.metrics.event_started_run(run_id, f"webhook {hook.name}", received_at)
    return _answer(hook, run_id, delivery, created=True), run_id


def _event(
    api: ApiContext, hook: WebhookRecord, headers: Headers, delivery: str | None, key: str | None
) -> EventRecord | None:
    """The event row that says which delivery started the run (only with a delivery id)."""
    if key is None:
        return None
    kind = headers.get("x-github-event") if hook.kind == "github" else None
    return EventRecord(
        dag_id=hook.dag_id,
        dedup_key=key,
        payload={"webhook": hook.name, "delivery_id": delivery, "event": kind},
        received_at=api.clock.now(),
        source=f"webhook {hook.name}",
    )


def _answer(
    hook: WebhookRecord, run_id: str, delivery: str | None, *, created: bool
) -> JSONResponse:
    body = {"run_id": run_id, "dag_id": hook.dag_id, "delivery_id": delivery, "created": created}
    return JsonAnswer(body, status_code=201 if created else 200)


ENDPOINTS = (
    Endpoint(
        method="POST",
        path="/hooks/{name}",
        handler=receive_webhook,
        auth="signature",
        summary="Receive a signed webhook delivery and start the webhook's DAG",
        tag="webhooks",
        body={"description": "The sender's payload, signed; JSON or GitHub's form encoding"},
        status=201,
    ),
)
