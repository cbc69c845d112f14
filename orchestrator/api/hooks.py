"""`POST /hooks/{name}`: a signed delivery starts a run, answered only once the run is committed.

The order of checks is the security story:

1. an unknown name is a 404 that says nothing about which names exist;
2. the body is read up to `api_max_body` (413 beyond, before it is all buffered);
3. the signature is verified over the raw bytes, in constant time, before anything in the
   body is looked at: an unsigned request costs one HMAC and is never parsed;
4. only then the webhook's rate limit and the DAG's (429), the JSON depth limit (400), and the
   webhook's filter (a delivery it does not want gets a 200 that says so, and no run);
5. the delivery id is the run's dedup key: the run and an event row commit in one
   transaction, and a retried delivery (the sender never saw our answer) gets the run the
   first one started instead of a second run.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from starlette.responses import JSONResponse

from orchestrator.api.endpoints import Endpoint
from orchestrator.api.inputs import body_bytes, path_text
from orchestrator.api.limits import parse_json
from orchestrator.api.runroutes import refuse_while_stopping
from orchestrator.api.signatures import verify_github, verify_hmac, verify_standard
from orchestrator.api.webhookconfig import build_conf, first_mismatch
from orchestrator.crashpoints import crashpoint
from orchestrator.errors import ApiError, DuplicateRunError, PayloadError
from orchestrator.store.records import EventRecord

if TYPE_CHECKING:
    from starlette.datastructures import Headers
    from starlette.requests import Request

    from orchestrator.api.context import ApiContext
    from orchestrator.store.records import WebhookRecord

logger = logging.getLogger("orchestrator.api.hooks")


async def receive_webhook(api: ApiContext, request: Request) -> JSONResponse:
    hook = _find(api, path_text(request, "name"))
    body = await body_bytes(api, request)
    delivery = _verify(api, hook, request.headers, body)
    api.limit(f"hook:{hook.name}", hook.rate or api.settings.webhook_rate, f"webhook {hook.name}")
    payload = _payload(api, request.headers, body)
    mismatch = first_mismatch(hook, payload, request.headers)
    if mismatch is not None:
        return JSONResponse({"run_id": None, "created": False, "ignored": mismatch})
    refuse_while_stopping(api)
    api.limit(
        f"dag:{hook.dag_id}", api.settings.dag_trigger_rate, f"starting runs of {hook.dag_id!r}"
    )
    return await _start_run(api, hook, request.headers, payload, delivery)


def _find(api: ApiContext, name: str) -> WebhookRecord:
    hook = api.registry.webhook(name)
    if hook is None:
        raise ApiError("there is no such route", status=404, code="not_found")
    return hook


def _verify(api: ApiContext, hook: WebhookRecord, headers: Headers, body: bytes) -> str | None:
    """Check the signature; return the delivery id the sender gave (None if it gave none)."""
    secrets = _secrets(api, hook)
    if hook.kind == "github":
        verify_github(secrets, body, headers.get("x-hub-signature-256"))
        return headers.get("x-github-delivery")
    if hook.kind == "standard":
        verify_standard(
            secrets,
            msg_id=headers.get("webhook-id"),
            timestamp=headers.get("webhook-timestamp"),
            signature=headers.get("webhook-signature"),
            body=body,
            now=api.clock.now(),
        )
        return headers.get("webhook-id")
    verify_hmac(
        secrets, body, headers.get(hook.signature_header), header_name=hook.signature_header
    )
    return headers.get(hook.delivery_header) if hook.delivery_header else None


def _secrets(api: ApiContext, hook: WebhookRecord) -> list[bytes]:
    """The webhook's secrets; a secret the daemon cannot read is a 503, logged for the owner."""
    try:
        secrets = api.registry.secrets(hook.name)
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
    if headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        fields = parse_qs(body.decode("utf-8", errors="replace"))
        if "payload" not in fields:
            raise PayloadError("a form-encoded delivery must have a `payload` field")
        body = fields["payload"][0].encode()
    if not body.strip():
        return {}
    return parse_json(body, max_depth=api.settings.api_max_json_depth)


async def _start_run(
    api: ApiContext, hook: WebhookRecord, headers: Headers, payload: Any, delivery: str | None
) -> JSONResponse:
    conf = build_conf(hook, payload, headers, delivery)
    key = f"webhook:{hook.name}:{delivery}" if delivery else None
    event = _event(api, hook, headers, delivery, key)
    try:
        run_id = await api.engine.trigger(
            hook.dag_id, conf, run_type="webhook", dedup_key=key, event=event
        )
    except DuplicateRunError as error:
        return _answer(hook, error.existing_run_id, delivery, created=False)
    crashpoint("webhook_committed")
    return _answer(hook, run_id, delivery, created=True)


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
    return JSONResponse(body, status_code=201 if created else 200)


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
