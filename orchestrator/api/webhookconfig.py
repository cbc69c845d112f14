"""Webhook definitions: checking them, and what a definition does with one delivery.

A definition (`WebhookRecord`) says which DAG a delivery to `POST /hooks/<name>` starts, how
the delivery is signed (`kind`), where the daemon reads the secret, which deliveries count
(`filters`) and what the run's conf holds (`conf_map`).

Paths name a value of a delivery: `header.<Name>` is a request header (any case); anything
else is a dotted path into the JSON payload, where whole-number parts index lists
(`repository.full_name`, `commits.0.id`). Filters are globs (`fnmatch`) on the value as text:
patterns on one path are alternatives, different paths must all match.

Every problem is a `RunError` whose message names the webhook and what to change, and never
holds a secret.
"""

from __future__ import annotations

import fnmatch
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict
from typing import Any

from orchestrator.api.secretfiles import read_secret_file
from orchestrator.errors import RunError
from orchestrator.store.records import WebhookRecord

KINDS = ("github", "standard", "hmac")
HEADER_PREFIX = "header."
GITHUB_EVENT_PATH = "header.X-GitHub-Event"
RESERVED_CONF_KEY = "webhook"  # build_conf puts the webhook's name and delivery id there

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_ENV_VAR = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
_HEADER_NAME = re.compile(r"[A-Za-z0-9!#$%&'*+.^_`|~-]{1,100}")  # an HTTP token (RFC 9110)
_PATH_PART = re.compile(r"[^.\s]{1,200}")
_MAX_RATE = 1e9


def check_webhook(record: WebhookRecord) -> None:
    """Raise `RunError` for the first thing wrong with a definition (not the DAG's existence)."""
    if not _NAME.fullmatch(record.name):
        raise RunError(
            f"{record.name!r} cannot name a webhook: use 1 to 64 letters, digits, '_', '.' or "
            "'-', starting with a letter or digit (it becomes the URL path /hooks/NAME)"
        )
    where = f"webhook {record.name}"
    if not record.dag_id:
        raise RunError(f"{where} needs the DAG its deliveries start (--dag DAG_ID)")
    if record.kind not in KINDS:
        raise RunError(f"{where}: unknown kind {record.kind!r}; choose {', '.join(KINDS)}")
    _check_secret_source(record, where)
    _check_paths(record, where)
    _check_headers(record, where)
    if record.rate is not None and not 0 < record.rate < _MAX_RATE:
        raise RunError(f"{where}: --rate must be a number of deliveries per second above 0")


def _check_secret_source(record: WebhookRecord, where: str) -> None:
    if (record.secret_env is None) == (record.secret_file is None):
        raise RunError(
            f"{where} needs exactly one secret source: --secret-env VAR (an environment "
            "variable of the daemon) or --secret-file PATH (one secret per line)"
        )
    if record.secret_env is not None and not _ENV_VAR.fullmatch(record.secret_env):
        raise RunError(
            f"{where}: {record.secret_env!r} is not an environment variable name; use letters, "
            "digits and '_', not starting with a digit (such as RETRAIN_SECRET)"
        )
    if record.secret_file is not None and not record.secret_file.startswith("/"):
        raise RunError(
            f"{where}: the secret file must be an absolute path (the daemon may run in another "
            f"folder), got {record.secret_file!r}"
        )


def _check_paths(record: WebhookRecord, where: str) -> None:
    for path, pattern in record.filters:
        check_path(path, f"{where}: filter {path}={pattern}")
        if not pattern:
            raise RunError(f"{where}: filter {path}= needs a pattern after '=' (such as push)")
    for key, path in record.conf_map.items():
        if not key or key == RESERVED_CONF_KEY:
            raise RunError(
                f"{where}: {key!r} cannot be a conf key; the conf's {RESERVED_CONF_KEY!r} key "
                "holds the webhook's name and delivery id"
            )
        check_path(path, f"{where}: conf {key}={path}")


def check_path(path: str, where: str) -> None:
    """Raise `RunError` unless `path` is `header.<Name>` or a dotted path into the payload."""
    if path.startswith(HEADER_PREFIX):
        if not _HEADER_NAME.fullmatch(path.removeprefix(HEADER_PREFIX)):
            raise RunError(
                f"{where}: {path!r} does not name a header; write header.<Name>, such as "
                f"{GITHUB_EVENT_PATH}"
            )
    elif not all(_PATH_PART.fullmatch(part) for part in path.split(".")):
        raise RunError(
            f"{where}: {path!r} is not a path into the payload; write keys and list indexes "
            "joined by dots, such as repository.full_name or commits.0.id"
        )


def _check_headers(record: WebhookRecord, where: str) -> None:
    for option, header in (
        ("--signature-header", record.signature_header),
        ("--delivery-header", record.delivery_header),
    ):
        if not _HEADER_NAME.fullmatch(header):
            raise RunError(f"{where}: {option} must be an HTTP header name, got {header!r}")


# -- reading a delivery ------------------------------------------------------------------------


def lookup(path: str, payload: Any, headers: Mapping[str, str]) -> Any:
    """The value `path` names in a delivery; None when it is absent."""
    if path.startswith(HEADER_PREFIX):
        return _header(headers, path.removeprefix(HEADER_PREFIX))
    value = payload
    for part in path.split("."):
        value = _step(value, part)
        if value is None:
            return None
    return value


def _header(headers: Mapping[str, str], name: str) -> str | None:
    wanted = name.lower()
    return next((value for key, value in headers.items() if key.lower() == wanted), None)


def _step(value: Any, part: str) -> Any:
    """One level down: a key of an object, or a whole-number index of a list."""
    if isinstance(value, dict):
        return value.get(part)
    if isinstance(value, list) and part.isdecimal() and int(part) < len(value):
        return value[int(part)]
    return None


def as_text(value: Any) -> str:
    """A payload value as filters see it: strings as they are, the rest as JSON text."""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def first_mismatch(record: WebhookRecord, payload: Any, headers: Mapping[str, str]) -> str | None:
    """None when the delivery passes every filter, else a sentence naming the one that failed."""
    for path, patterns in grouped_filters(record.filters).items():
        value = lookup(path, payload, headers)
        wanted = " or ".join(patterns)
        if value is None:
            return f"{path} is absent, not {wanted}"
        text = as_text(value)
        if not any(fnmatch.fnmatchcase(text, pattern) for pattern in patterns):
            return f"{path} is {text!r}, not {wanted}"
    return None


def grouped_filters(filters: Iterable[tuple[str, str]]) -> dict[str, list[str]]:
    """The patterns of each path, paths in the order they were first given."""
    grouped: dict[str, list[str]] = {}
    for path, pattern in filters:
        grouped.setdefault(path, []).append(pattern)
    return grouped


def build_conf(
    record: WebhookRecord, payload: Any, headers: Mapping[str, str], delivery_id: str | None
) -> dict[str, Any]:
    """The conf of the run a delivery starts: the whole payload, or the mapped values."""
    if record.conf_map:
        conf = {key: lookup(path, payload, headers) for key, path in record.conf_map.items()}
    else:
        conf = {"payload": payload}
    conf[RESERVED_CONF_KEY] = {"name": record.name, "delivery_id": delivery_id}
    return conf


# -- secrets -----------------------------------------------------------------------------------


def read_secrets(record: WebhookRecord, environ: Mapping[str, str]) -> list[bytes]:
    """The secrets deliveries may be signed with, read now from the variable or the file.

    A file holds one secret per non-empty line, so during a rotation the old and the new one
    both verify. Standard Webhooks secrets (`whsec_...`) are base64 and decoded to their key.
    Reading a file blocks: the daemon reads it through `SecretFileCache` instead.
    """
    if record.secret_env is not None:
        texts = [_secret_from_environ(record, record.secret_env, environ)]
    else:
        texts = read_secret_file(record.secret_file or "", where=f"webhook {record.name}")
    return secret_keys(record, texts)


def secret_keys(record: WebhookRecord, texts: list[str]) -> list[bytes]:
    """The keys the secrets' texts stand for (a Standard Webhooks secret is base64)."""
    return [_secret_bytes(record, text, index) for index, text in enumerate(texts, 1)]


def _secret_from_environ(record: WebhookRecord, variable: str, environ: Mapping[str, str]) -> str:
    text = environ.get(variable, "").strip()
    if not text:
        state = "is empty" if variable in environ else "is not set"
        raise RunError(
            f"webhook {record.name}: the environment variable {variable} {state} in the "
            "daemon's environment; set it where the daemon starts (its systemd unit or shell) "
            "and restart the daemon"
        )
    return text


def _secret_bytes(record: WebhookRecord, text: str, index: int) -> bytes:
    if record.kind != "standard":
        return text.encode()
    from orchestrator.api.signatures import decode_standard_secret

    try:
        return decode_standard_secret(text)
    except ValueError:
        # Its message is the other module's; ours names where the secret is, never the secret.
        if record.secret_env is not None:
            where = f"the environment variable {record.secret_env}"
        else:
            where = f"secret {index} of the file {record.secret_file}"
        raise RunError(
            f"webhook {record.name}: {where} is not a Standard Webhooks secret (whsec_ "
            "followed by base64); copy it again from the sender's settings"
        ) from None


# -- definitions as JSON (the control socket, --json) ------------------------------------------


def github_event_filters(kind: str, events: Iterable[str]) -> list[tuple[str, str]]:
    """`--event push` as the filter it stands for; only GitHub sends X-GitHub-Event."""
    events = list(events)
    if events and kind != "github":
        raise RunError(
            f"--event is for GitHub webhooks (kind github), not kind {kind}; use "
            "--filter PATH=PATTERN to choose deliveries by a header or a payload value"
        )
    return [(GITHUB_EVENT_PATH, event) for event in events]


def webhook_json(record: WebhookRecord) -> dict[str, Any]:
    """A definition as JSON: every field, filters as [path, pattern] pairs (no secret).

    `damaged` (why the stored row cannot be read whole) is there only when it is set: it is
    the store's word on the row, not part of a definition one could send back.
    """
    document = asdict(record)
    document["filters"] = [list(pair) for pair in record.filters]
    if document["damaged"] is None:
        del document["damaged"]
    return document


_FIELD_TYPES: dict[str, tuple[type, ...]] = {
    "name": (str,),
    "dag_id": (str,),
    "kind": (str,),
    "secret_env": (str, type(None)),
    "secret_file": (str, type(None)),
    "filters": (list,),
    "conf_map": (dict,),
    "signature_header": (str,),
    "delivery_header": (str,),
    "rate": (int, float, type(None)),
}


def webhook_from_json(document: Any, *, created_at: float) -> WebhookRecord:
    """A checked definition from JSON (a control-socket request); `RunError` when malformed."""
    if not isinstance(document, dict):
        raise RunError("the request needs `webhook` as a JSON object of the definition's fields")
    unknown = sorted(set(document) - set(_FIELD_TYPES))
    if unknown:
        raise RunError(f"unknown webhook fields {unknown}; known: {', '.join(_FIELD_TYPES)}")
    for name in ("name", "dag_id"):
        if name not in document:
            raise RunError(f"the webhook definition needs `{name}`")
    for name, value in document.items():
        if not isinstance(value, _FIELD_TYPES[name]) or isinstance(value, bool):
            raise RunError(f"the webhook field `{name}` has the wrong type: {type(value).__name__}")
    fields = {**document, "filters": _pairs(document.get("filters", []))}
    _check_conf_map(fields.get("conf_map", {}))
    record = WebhookRecord(**fields, created_at=created_at)
    check_webhook(record)
    return record


def _pairs(filters: list[Any]) -> list[tuple[str, str]]:
    if not all(
        isinstance(pair, list | tuple) and len(pair) == 2 and all(isinstance(x, str) for x in pair)
        for pair in filters
    ):
        raise RunError("the webhook field `filters` must be a list of [path, pattern] pairs")
    return [(path, pattern) for path, pattern in filters]


def _check_conf_map(conf_map: dict[Any, Any]) -> None:
    if not all(isinstance(value, str) for value in conf_map.values()):
        raise RunError("the webhook field `conf_map` must map conf keys to paths (text)")
