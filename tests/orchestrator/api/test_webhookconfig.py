"""Webhook definitions: validation, reading a delivery (paths, filters, conf), and secrets."""

from __future__ import annotations

import base64
import os
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from orchestrator.api.signatures import decode_standard_secret
from orchestrator.api.webhookconfig import (
    build_conf,
    check_webhook,
    first_mismatch,
    github_event_filters,
    lookup,
    read_secrets,
    webhook_from_json,
    webhook_json,
)
from orchestrator.errors import RunError
from orchestrator.store import WebhookRecord

PUSH: dict[str, Any] = {
    "ref": "refs/heads/main",
    "after": "9f1c2e",
    "repository": {"full_name": "acme/models", "private": True, "stars": 12},
    "commits": [{"id": "a1", "message": "train"}, {"id": "b2", "message": "tune"}],
    "deleted": False,
    "pusher": None,
}
HEADERS = {"x-github-event": "push", "X-GitHub-Delivery": "d-1", "content-type": "application/json"}


def hook(**changes: Any) -> WebhookRecord:
    base = WebhookRecord(name="retrain", dag_id="train", secret_env="RETRAIN_SECRET")
    return replace(base, **changes)


# -- validation ----------------------------------------------------------------------------------


def test_a_plain_definition_is_valid_with_the_defaults() -> None:
    record = hook()
    check_webhook(record)
    assert (record.kind, record.signature_header, record.delivery_header) == (
        "github",
        "X-Signature",
        "Idempotency-Key",
    )
    check_webhook(hook(name="a", kind="hmac", secret_env=None, secret_file="/etc/hook.secret"))
    check_webhook(hook(name="Build_2.v-1", filters=[("commits.0.id", "*")], rate=0.5))


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"name": "-retrain"}, "'-retrain' cannot name a webhook: use 1 to 64 letters"),
        ({"name": "re/train"}, "cannot name a webhook"),
        ({"name": "x" * 65}, "cannot name a webhook"),
        ({"name": ""}, "cannot name a webhook"),
        ({"dag_id": ""}, "webhook retrain needs the DAG its deliveries start (--dag DAG_ID)"),
        ({"kind": "gitlab"}, "webhook retrain: unknown kind 'gitlab'; choose github, standard"),
        ({"secret_env": None}, "webhook retrain needs exactly one secret source: --secret-env"),
        ({"secret_file": "/s"}, "needs exactly one secret source"),
        ({"secret_env": "1PASSWORD"}, "'1PASSWORD' is not an environment variable name"),
        ({"secret_env": "MY-SECRET"}, "is not an environment variable name"),
        (
            {"secret_env": None, "secret_file": "hook.secret"},
            "the secret file must be an absolute path (the daemon may run in another folder)",
        ),
        ({"filters": [("header.", "x")]}, "'header.' does not name a header; write header."),
        ({"filters": [("header.X Event", "x")]}, "does not name a header"),
        ({"filters": [("repository..name", "x")]}, "'repository..name' is not a path into"),
        ({"filters": [("", "x")]}, "is not a path into the payload"),
        ({"filters": [("ref", "")]}, "filter ref= needs a pattern after '='"),
        ({"conf_map": {"commit": "after."}}, "conf commit=after.: 'after.' is not a path"),
        ({"conf_map": {"webhook": "after"}}, "'webhook' cannot be a conf key"),
        ({"conf_map": {"": "after"}}, "'' cannot be a conf key"),
        ({"signature_header": "X Sig"}, "--signature-header must be an HTTP header name"),
        ({"delivery_header": ""}, "--delivery-header must be an HTTP header name"),
        ({"rate": 0.0}, "--rate must be a number of deliveries per second above 0"),
        ({"rate": -1.0}, "--rate must be"),
    ],
)
def test_bad_definitions_are_refused_with_what_to_change(
    changes: dict[str, Any], message: str
) -> None:
    with pytest.raises(RunError) as caught:
        check_webhook(hook(**changes))
    assert message in str(caught.value)


def test_events_are_a_github_filter_and_only_for_github() -> None:
    assert github_event_filters("github", ["push", "release"]) == [
        ("header.X-GitHub-Event", "push"),
        ("header.X-GitHub-Event", "release"),
    ]
    assert github_event_filters("hmac", []) == []
    with pytest.raises(
        RunError, match=re.escape("--event is for GitHub webhooks (kind github), not kind")
    ):
        github_event_filters("standard", ["push"])


def test_a_definition_round_trips_through_json() -> None:
    record = hook(filters=[("ref", "refs/heads/*")], conf_map={"sha": "after"}, rate=2.0)
    document = webhook_json(record)
    assert document["filters"] == [["ref", "refs/heads/*"]]
    fields = {key: value for key, value in document.items() if key != "created_at"}
    assert webhook_from_json(fields, created_at=record.created_at) == record


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ([], "the request needs `webhook` as a JSON object"),
        ({"name": "x"}, "the webhook definition needs `dag_id`"),
        ({"name": "x", "dag_id": "d", "secret": "s"}, "unknown webhook fields ['secret']"),
        ({"name": "x", "dag_id": 3}, "the webhook field `dag_id` has the wrong type: int"),
        ({"name": "x", "dag_id": "d", "rate": True}, "`rate` has the wrong type: bool"),
        ({"name": "x", "dag_id": "d", "filters": [["ref"]]}, "list of [path, pattern] pairs"),
        ({"name": "x", "dag_id": "d", "conf_map": {"a": 1}}, "must map conf keys to paths"),
        ({"name": "x", "dag_id": "d"}, "webhook x needs exactly one secret source"),
    ],
)
def test_malformed_json_definitions_are_refused(document: Any, message: str) -> None:
    with pytest.raises(RunError) as caught:
        webhook_from_json(document, created_at=0.0)
    assert message in str(caught.value)


# -- paths, filters and conf ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("ref", "refs/heads/main"),
        ("repository.full_name", "acme/models"),
        ("repository", PUSH["repository"]),
        ("commits.0.id", "a1"),
        ("commits.1.message", "tune"),
        ("commits.2.id", None),
        ("commits.first.id", None),
        ("commits.-1.id", None),
        ("ref.length", None),
        ("nothing.here", None),
        ("pusher", None),
        ("deleted", False),
        ("header.X-GitHub-Event", "push"),
        ("header.x-github-delivery", "d-1"),
        ("header.X-Missing", None),
    ],
)
def test_lookup_reads_headers_any_case_and_dotted_payload_paths(path: str, value: Any) -> None:
    assert lookup(path, PUSH, HEADERS) == value


def test_lookup_in_a_payload_that_is_a_list() -> None:
    assert lookup("1.id", [{"id": "x"}, {"id": "y"}], {}) == "y"


def test_no_filters_let_everything_through() -> None:
    assert first_mismatch(hook(), {}, {}) is None


def test_patterns_on_one_path_are_alternatives_and_paths_must_all_match() -> None:
    record = hook(
        filters=[
            ("header.X-GitHub-Event", "push"),
            ("header.X-GitHub-Event", "release"),
            ("ref", "refs/heads/main"),
            ("ref", "refs/tags/v*"),
            ("repository.private", "true"),
            ("repository.stars", "1?"),
        ]
    )
    assert first_mismatch(record, PUSH, HEADERS) is None
    tagged = {**PUSH, "ref": "refs/tags/v1.2"}
    assert first_mismatch(record, tagged, {"X-GitHub-Event": "release"}) is None
    assert first_mismatch(record, PUSH, {"X-GitHub-Event": "ping"}) == (
        "header.X-GitHub-Event is 'ping', not push or release"
    )
    feature = {**PUSH, "ref": "refs/heads/feature"}
    assert first_mismatch(record, feature, HEADERS) == (
        "ref is 'refs/heads/feature', not refs/heads/main or refs/tags/v*"
    )
    public = {**PUSH, "repository": {"private": False, "stars": 12}}
    assert first_mismatch(record, public, HEADERS) == "repository.private is 'false', not true"


def test_an_absent_value_fails_its_filter_and_matching_is_case_sensitive() -> None:
    record = hook(filters=[("header.X-GitHub-Event", "push")])
    assert first_mismatch(record, PUSH, {}) == "header.X-GitHub-Event is absent, not push"
    assert first_mismatch(record, PUSH, {"X-GitHub-Event": "PUSH"}) is not None


def test_without_a_mapping_the_conf_is_the_whole_payload() -> None:
    assert build_conf(hook(), PUSH, HEADERS, "d-1") == {
        "payload": PUSH,
        "webhook": {"name": "retrain", "delivery_id": "d-1"},
    }


def test_a_mapping_picks_values_and_absent_ones_are_none() -> None:
    record = hook(
        conf_map={
            "sha": "after",
            "repo": "repository.full_name",
            "event": "header.X-GitHub-Event",
            "first": "commits.0",
            "tag": "release.tag_name",
        }
    )
    assert build_conf(record, PUSH, HEADERS, None) == {
        "sha": "9f1c2e",
        "repo": "acme/models",
        "event": "push",
        "first": {"id": "a1", "message": "train"},
        "tag": None,
        "webhook": {"name": "retrain", "delivery_id": None},
    }


# -- secrets -------------------------------------------------------------------------------------


def test_a_secret_from_the_environment() -> None:
    environ = {"RETRAIN_SECRET": "  s3cret-value \n"}
    assert read_secrets(hook(), environ) == [b"s3cret-value"]


@pytest.mark.parametrize(
    ("environ", "state"), [({}, "is not set"), ({"RETRAIN_SECRET": " "}, "is empty")]
)
def test_a_missing_environment_secret_names_the_variable(
    environ: dict[str, str], state: str
) -> None:
    with pytest.raises(RunError) as caught:
        read_secrets(hook(), environ)
    assert str(caught.value).startswith(
        f"webhook retrain: the environment variable RETRAIN_SECRET {state} in the daemon's "
        "environment"
    )


def test_a_secret_file_holds_one_secret_per_line_for_rotation(tmp_path: Path) -> None:
    path = tmp_path / "retrain.secret"
    path.write_text("old-secret\n\n   new-secret  \n")
    record = hook(secret_env=None, secret_file=str(path), kind="hmac")
    assert read_secrets(record, {}) == [b"old-secret", b"new-secret"]
    path.write_text("new-secret\n")  # read each time: the rotation ends without a restart
    assert read_secrets(record, {}) == [b"new-secret"]


def test_unreadable_secret_files_say_why_without_the_secret(tmp_path: Path) -> None:
    record = hook(secret_env=None, secret_file=str(tmp_path / "missing"))
    with pytest.raises(RunError) as caught:
        read_secrets(record, {})
    assert str(caught.value) == (
        f"webhook retrain: cannot read the secret file {tmp_path / 'missing'}: No such file or "
        "directory; check that it exists and the daemon's user may read it"
    )
    blank = tmp_path / "blank"
    blank.write_text("\n  \n")
    with pytest.raises(RunError, match="holds no secret; write one per line"):
        read_secrets(replace(record, secret_file=str(blank)), {})
    binary = tmp_path / "binary"
    binary.write_bytes(b"\xff\xfesecret-bytes")
    with pytest.raises(RunError, match="is not UTF-8 text") as caught:
        read_secrets(replace(record, secret_file=str(binary)), {})
    assert "secret-bytes" not in str(caught.value)
    with pytest.raises(RunError, match=r"the secret file .* is not a regular file"):
        read_secrets(replace(record, secret_file=str(tmp_path)), {})


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_a_secret_file_the_daemon_may_not_read(tmp_path: Path) -> None:
    path = tmp_path / "locked"
    path.write_text("top-secret\n")
    path.chmod(0)
    record = hook(secret_env=None, secret_file=str(path))
    with pytest.raises(RunError, match="Permission denied") as caught:
        read_secrets(record, {})
    assert "top-secret" not in str(caught.value)


def test_standard_webhooks_secrets_are_decoded_to_their_key(tmp_path: Path) -> None:
    key = b"\x01\x02 standard key bytes"
    text = "whsec_" + base64.b64encode(key).decode()
    record = hook(kind="standard")
    assert read_secrets(record, {"RETRAIN_SECRET": text}) == [key]
    assert decode_standard_secret(text) == key
    path = tmp_path / "standard.secret"
    path.write_text(f"{text}\n{base64.b64encode(b'next key').decode()}\n")
    from_file = replace(record, secret_env=None, secret_file=str(path))
    assert read_secrets(from_file, {}) == [key, b"next key"]


def test_a_bad_standard_secret_names_where_it_is_but_not_what_it_is(tmp_path: Path) -> None:
    record = hook(kind="standard")
    with pytest.raises(RunError) as caught:
        read_secrets(record, {"RETRAIN_SECRET": "whsec_not*base64!"})
    message = str(caught.value)
    assert message.startswith(
        "webhook retrain: the environment variable RETRAIN_SECRET is not a Standard Webhooks "
        "secret (whsec_ followed by base64)"
    )
    assert "not*base64!" not in message
    path = tmp_path / "standard.secret"
    path.write_text(base64.b64encode(b"good").decode() + "\nplain-text-secret\n")
    with pytest.raises(RunError) as caught:
        read_secrets(replace(record, secret_env=None, secret_file=str(path)), {})
    assert f"secret 2 of the file {path} is not a Standard Webhooks secret" in str(caught.value)
    assert "plain-text-secret" not in str(caught.value)
