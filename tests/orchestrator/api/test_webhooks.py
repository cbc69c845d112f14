"""`POST /hooks/{name}` against the real server: signatures, replays, limits, filters, conf.

Each test serves the API on a loopback port over a real engine and store (`apikit.serving`)
and checks both the answer and what the store holds afterwards: a refused delivery must
leave no run behind, an accepted one exactly one.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

import anyio
import httpx
import pytest
from apikit import Served, hello_dag, serving

from orchestrator import DAG, task
from orchestrator.api.hooks import REFUSED
from orchestrator.api.signatures import sign_github, sign_hmac, sign_standard
from orchestrator.clock import FakeClock
from orchestrator.config import Settings

SettingsFactory = Callable[..., Settings]

SECRET = "It's a Secret to Everybody"
# GitHub's documented example (docs: "Validating webhook deliveries").
GITHUB_BODY = b"Hello, World!"
GITHUB_SIGNATURE = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
# The Standard Webhooks specification's published example.
WHSEC = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
MSG_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
MSG_TIMESTAMP = 1614265330
MSG_BODY = b'{"test": 2432232314}'
MSG_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
PUSH = {"ref": "refs/heads/main", "after": "c0ffee", "repository": {"full_name": "acme/models"}}


@pytest.fixture(autouse=True)
def refusal_log(caplog: pytest.LogCaptureFixture) -> None:
    """Why a delivery was refused is logged at INFO, for the owner; the tests read it there."""
    caplog.set_level(logging.INFO, logger="orchestrator.api.hooks")


def held_dag(release: anyio.Event) -> DAG:
    """One run at a time, held until `release`: the other runs stay queued and write nothing."""
    with DAG("held", max_active_runs=1) as dag:

        @task(in_process=True)
        async def hold() -> None:
            await release.wait()

        hold()
    return dag


def github_headers(
    body: bytes, *, secret: str = SECRET, delivery: str = "d-1", event: str = "push"
) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery,
        "X-Hub-Signature-256": sign_github(secret.encode(), body),
    }


async def deliver(
    served: Served, payload: Any, *, name: str = "deploy", **options: Any
) -> httpx.Response:
    """POST `payload` as JSON to the webhook, signed as GitHub would sign it."""
    body = json.dumps(payload).encode()
    return await served.client.post(
        f"/hooks/{name}", content=body, headers=github_headers(body, **options)
    )


def error_of(answer: httpx.Response, status: int, code: str) -> str:
    """The error's message, once the answer is checked to be `status` with `code`."""
    assert answer.status_code == status, answer.text
    error = answer.json()["error"]
    assert (error["status"], error["code"]) == (status, code), error
    message: str = error["message"]
    return message


async def listed(served: Served, kind: str) -> list[dict[str, Any]]:
    """What `GET /api/v1/<kind>` lists: the store seen through the API."""
    answer = await served.client.get(f"/api/v1/{kind}", headers=served.auth("read"))
    assert answer.status_code == 200, answer.text
    items: list[dict[str, Any]] = answer.json()[kind]
    return items


async def runs_of(served: Served) -> list[dict[str, Any]]:
    return await listed(served, "runs")


async def events_of(served: Served) -> list[dict[str, Any]]:
    return await listed(served, "events")


async def run_conf(served: Served, run_id: str) -> dict[str, Any]:
    answer = await served.client.get(f"/api/v1/runs/{run_id}", headers=served.auth("read"))
    assert answer.status_code == 200, answer.text
    conf: dict[str, Any] = answer.json()["run"]["conf"]
    return conf


# -- GitHub ---------------------------------------------------------------------------------------


async def test_githubs_documented_vector_verifies_and_is_then_refused_as_not_json(
    make_settings: SettingsFactory,
) -> None:
    assert sign_github(SECRET.encode(), GITHUB_BODY) == GITHUB_SIGNATURE
    async with serving(make_settings(), hello_dag()) as served:
        await served.add_webhook("deploy", "hello", SECRET)
        headers = {"X-Hub-Signature-256": GITHUB_SIGNATURE, "X-GitHub-Delivery": "d-1"}
        answer = await served.client.post("/hooks/deploy", content=GITHUB_BODY, headers=headers)
        message = error_of(answer, 400, "invalid_json")  # not bad_signature: it verified
        assert "not valid JSON" in message
        assert await runs_of(served) == []


async def test_a_signed_github_delivery_starts_a_run_and_records_its_event(
    make_settings: SettingsFactory,
) -> None:
    async with serving(make_settings(), hello_dag()) as served:
        await served.add_webhook("deploy", "hello", SECRET)
        answer = await deliver(served, PUSH, delivery="d-42")
        assert answer.status_code == 201, answer.text
        body = answer.json()
        assert body == {**body, "dag_id": "hello", "delivery_id": "d-42", "created": True}
        conf = await run_conf(served, body["run_id"])
        assert conf == {"payload": PUSH, "webhook": {"name": "deploy", "delivery_id": "d-42"}}
        (event,) = await events_of(served)
    assert event["run_id"] == body["run_id"]
    assert event["source"] == "webhook deploy"
    assert event["dedup_key"] == "webhook:deploy:d-42"
    assert event["payload"] == {"webhook": "deploy", "delivery_id": "d-42", "event": "push"}


async def test_a_form_encoded_github_delivery_starts_a_run(
    make_settings: SettingsFactory,
) -> None:
    body = urlencode({"payload": json.dumps(PUSH)}).encode()
    headers = {
        **github_headers(body),
        "Content-Type": "application/x-www-form-urlencoded",
    }
    async with serving(make_settings(), hello_dag()) as served:
        await served.add_webhook("deploy", "hello", SECRET)
        answer = await served.client.post("/hooks/deploy", content=body, headers=headers)
        assert answer.status_code == 201, answer.text
        assert (await run_conf(served, answer.json()["run_id"]))["payload"] == PUSH


# -- Standard Webhooks ----------------------------------------------------------------------------


def standard_headers(signature: str = MSG_SIGNATURE) -> dict[str, str]:
    return {
        "webhook-id": MSG_ID,
        "webhook-timestamp": str(MSG_TIMESTAMP),
        "webhook-signature": signature,
        "Content-Type": "application/json",
    }


async def post_standard(served: Served, signature: str = MSG_SIGNATURE) -> httpx.Response:
    headers = standard_headers(signature)
    return await served.client.post("/hooks/std", content=MSG_BODY, headers=headers)


async def test_the_standard_webhooks_example_is_accepted_near_its_timestamp_and_not_replayed(
    make_settings: SettingsFactory, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock(MSG_TIMESTAMP + 10)
    async with serving(make_settings(), hello_dag(), clock=clock) as served:
        await served.add_webhook("std", "hello", WHSEC, kind="standard")
        answer = await post_standard(served)
        assert answer.status_code == 201, answer.text
        assert answer.json()["delivery_id"] == MSG_ID
        assert (await run_conf(served, answer.json()["run_id"]))["payload"] == {"test": 2432232314}
        clock.advance(360)  # a captured delivery sent again six minutes later
        assert error_of(await post_standard(served), 401, "bad_signature") == REFUSED
        assert "s old" in caplog.text  # why, for the owner: in the log, not in the answer
        assert len(await runs_of(served)) == 1


async def test_the_standard_webhooks_example_six_minutes_late_is_refused_as_stale(
    make_settings: SettingsFactory, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock(MSG_TIMESTAMP + 360)
    async with serving(make_settings(), hello_dag(), clock=clock) as served:
        await served.add_webhook("std", "hello", WHSEC, kind="standard")
        assert error_of(await post_standard(served), 401, "bad_signature") == REFUSED
        assert "webhook std refused a delivery: the webhook-timestamp is 360 s old" in caplog.text
        assert await runs_of(served) == []


async def test_standard_webhooks_accepts_the_second_of_several_signatures(
    make_settings: SettingsFactory,
) -> None:
    other_key = base64.b64decode("c2VjcmV0LW9mLWFub3RoZXItc2VuZGVyLTMyYnl0ZXM=")
    rotated = sign_standard(other_key, MSG_ID, MSG_TIMESTAMP, MSG_BODY)
    clock = FakeClock(MSG_TIMESTAMP)
    async with serving(make_settings(), hello_dag(), clock=clock) as served:
        await served.add_webhook("std", "hello", WHSEC, kind="standard")
        alone = await post_standard(served, rotated)
        error_of(alone, 401, "bad_signature")
        answer = await post_standard(served, f"{rotated} {MSG_SIGNATURE}")
        assert answer.status_code == 201, answer.text


# -- plain HMAC -----------------------------------------------------------------------------------


async def test_a_plain_hmac_webhook_reads_its_own_signature_and_delivery_headers(
    make_settings: SettingsFactory, caplog: pytest.LogCaptureFixture
) -> None:
    body = json.dumps(PUSH).encode()
    signature = sign_hmac(b"acme-secret", body)
    async with serving(make_settings(), hello_dag()) as served:
        await served.add_webhook(
            "acme",
            "hello",
            "acme-secret",
            kind="hmac",
            signature_header="X-Acme-Signature",
            delivery_header="X-Acme-Delivery",
        )
        send = {"X-Acme-Signature": signature, "X-Acme-Delivery": "acme-1"}
        answer = await served.client.post("/hooks/acme", content=body, headers=send)
        assert answer.status_code == 201, answer.text
        assert answer.json()["delivery_id"] == "acme-1"
        prefixed = {**send, "X-Acme-Signature": f"sha256={signature.upper()}"}
        again = await served.client.post("/hooks/acme", content=body, headers=prefixed)
        assert (again.status_code, again.json()["run_id"]) == (200, answer.json()["run_id"])
        default = {"X-Signature": signature, "X-Acme-Delivery": "acme-2"}
        wrong_header = await served.client.post("/hooks/acme", content=body, headers=default)
        error_of(wrong_header, 401, "bad_signature")
        assert "X-Acme-Signature header is missing" in caplog.text
        assert len(await runs_of(served)) == 1


# -- refused signatures ---------------------------------------------------------------------------


def tampered(body: bytes, headers: dict[str, str]) -> tuple[bytes, dict[str, str]]:
    return body.replace(b"c0ffee", b"c0ffef"), headers  # one byte


def wrong_secret(body: bytes, headers: dict[str, str]) -> tuple[bytes, dict[str, str]]:
    return body, github_headers(body, secret="not the secret")


def no_header(body: bytes, headers: dict[str, str]) -> tuple[bytes, dict[str, str]]:
    return body, {k: v for k, v in headers.items() if k != "X-Hub-Signature-256"}


def sha1_header(body: bytes, headers: dict[str, str]) -> tuple[bytes, dict[str, str]]:
    return body, {**headers, "X-Hub-Signature-256": "sha1=" + "0" * 40}


def short_header(body: bytes, headers: dict[str, str]) -> tuple[bytes, dict[str, str]]:
    return body, {**headers, "X-Hub-Signature-256": headers["X-Hub-Signature-256"][:-2]}


@pytest.mark.parametrize(
    ("spoil", "said"),
    [
        (tampered, "does not match"),
        (wrong_secret, "does not match"),
        (no_header, "header is missing"),
        (sha1_header, "must look like sha256="),
        (short_header, "must look like sha256="),
    ],
)
async def test_a_badly_signed_delivery_is_refused_and_starts_nothing(
    make_settings: SettingsFactory,
    caplog: pytest.LogCaptureFixture,
    spoil: Callable[[bytes, dict[str, str]], tuple[bytes, dict[str, str]]],
    said: str,
) -> None:
    good = json.dumps(PUSH).encode()
    body, headers = spoil(good, github_headers(good))
    assert body != good or headers != github_headers(good)
    async with serving(make_settings(), hello_dag()) as served:
        await served.add_webhook("deploy", "hello", SECRET)
        answer = await served.client.post("/hooks/deploy", content=body, headers=headers)
        assert error_of(answer, 401, "bad_signature") == REFUSED  # the same for every cause
        assert said in caplog.text  # the cause, for the webhook's owner
        assert SECRET not in answer.text
        assert SECRET not in caplog.text
        assert await runs_of(served) == []
        assert await events_of(served) == []


# -- replays --------------------------------------------------------------------------------------


async def test_a_delivery_sent_three_times_starts_one_run(make_settings: SettingsFactory) -> None:
    async with serving(make_settings(), hello_dag()) as served:
        await served.add_webhook("deploy", "hello", SECRET)
        answers = [await deliver(served, PUSH, delivery="d-7") for _ in range(3)]
        assert [answer.status_code for answer in answers] == [201, 200, 200]
        assert [answer.json()["created"] for answer in answers] == [True, False, False]
        assert len({answer.json()["run_id"] for answer in answers}) == 1
        assert len(await runs_of(served)) == 1
        assert len(await events_of(served)) == 1
        other = await deliver(served, {**PUSH, "after": "c0ffee2"}, delivery="d-8")
        assert other.status_code == 201  # a new delivery id with a new body is a new run
        assert len(await runs_of(served)) == 2


# -- what a delivery asks for ---------------------------------------------------------------------


async def test_filters_answer_unwanted_deliveries_with_a_reason_and_no_run(
    make_settings: SettingsFactory,
) -> None:
    filters = [("header.X-GitHub-Event", "push"), ("ref", "refs/heads/main")]
    async with serving(make_settings(), hello_dag()) as served:
        await served.add_webhook("deploy", "hello", SECRET, filters=filters)
        ping = await deliver(served, {"zen": "Keep it simple."}, event="ping", delivery="d-1")
        branch = {**PUSH, "ref": "refs/heads/dev"}
        other_branch = await deliver(served, branch, delivery="d-2")
        for answer, reason in (
            (ping, "header.X-GitHub-Event is 'ping', not push"),
            (other_branch, "ref is 'refs/heads/dev', not refs/heads/main"),
        ):
            assert answer.status_code == 200, answer.text
            assert answer.json() == {"run_id": None, "created": False, "ignored": reason}
        assert await runs_of(served) == []
        wanted = await deliver(served, PUSH, delivery="d-3")
        assert wanted.status_code == 201, wanted.text
        assert [run["run_id"] for run in await runs_of(served)] == [wanted.json()["run_id"]]


async def test_a_conf_map_puts_chosen_payload_values_in_the_runs_conf(
    make_settings: SettingsFactory,
) -> None:
    conf_map = {"sha": "after", "repo": "repository.full_name", "missing": "head_commit.id"}
    async with serving(make_settings(), hello_dag()) as served:
        await served.add_webhook("deploy", "hello", SECRET, conf_map=conf_map)
        answer = await deliver(served, PUSH, delivery="d-9")
        assert answer.status_code == 201, answer.text
        conf = await run_conf(served, answer.json()["run_id"])
    assert conf == {
        "sha": "c0ffee",
        "repo": "acme/models",
        "missing": None,
        "webhook": {"name": "deploy", "delivery_id": "d-9"},
    }


# -- refusals that must not reveal anything -------------------------------------------------------


async def test_an_unknown_webhook_is_answered_exactly_like_a_known_one_with_a_bad_signature(
    make_settings: SettingsFactory,
) -> None:
    body = json.dumps(PUSH).encode()
    forged = github_headers(body, secret="a guess")
    tries = [({}, b""), ({}, body), (forged, body), ({"X-Hub-Signature-256": "sha1=x"}, body)]
    async with serving(make_settings(), hello_dag()) as served:
        await served.add_webhook("deploy", "hello", SECRET)
        await served.add_webhook("std", "hello", WHSEC, kind="standard")
        await served.add_webhook("acme", "hello", SECRET, kind="hmac")
        for headers, content in tries:
            answers = [
                await served.client.post(f"/hooks/{name}", content=content, headers=headers)
                for name in ("deploy", "std", "acme", "deplo", "nobody")
            ]
            assert {answer.status_code for answer in answers} == {401}
            assert len({answer.content for answer in answers}) == 1
            assert "deploy" not in answers[0].text
        assert await runs_of(served) == []


async def test_a_paused_dag_refuses_deliveries_with_409_and_no_run(
    make_settings: SettingsFactory,
) -> None:
    async with serving(make_settings(), hello_dag()) as served:
        await served.add_webhook("deploy", "hello", SECRET)
        paused = await served.client.post("/api/v1/dags/hello/pause", headers=served.auth("admin"))
        assert paused.status_code == 200, paused.text
        message = error_of(await deliver(served, PUSH), 409, "dag_paused")
        assert "unpause" in message
        assert await runs_of(served) == []
        assert await events_of(served) == []


async def test_a_webhook_whose_dag_is_gone_says_so_once_the_signature_verifies(
    make_settings: SettingsFactory,
) -> None:
    async with serving(make_settings(), hello_dag()) as served:
        await served.add_webhook("ghost", "retired", SECRET)  # its DAG file was deleted
        unsigned = await served.client.post("/hooks/ghost", content=b"{}")
        error_of(unsigned, 401, "bad_signature")
        message = error_of(await deliver(served, PUSH, name="ghost"), 404, "dag_not_found")
        assert "retired" in message
        assert await runs_of(served) == []


async def test_a_webhook_without_its_secret_answers_503_and_never_shows_a_secret(
    make_settings: SettingsFactory, caplog: pytest.LogCaptureFixture
) -> None:
    async with serving(make_settings(), hello_dag()) as served:
        await served.add_webhook("deploy", "hello", SECRET)
        served.env["SECRET_DEPLOY"] = "  "  # emptied: as unusable as removed
        blank = await deliver(served, PUSH)
        del served.env["SECRET_DEPLOY"]
        removed = await deliver(served, PUSH)
        for answer in (blank, removed):
            assert "not configured" in error_of(answer, 503, "webhook_misconfigured")
            assert SECRET not in answer.text
            assert "SECRET_DEPLOY" not in answer.text  # the owner's business, in the log
        assert await runs_of(served) == []
        assert "SECRET_DEPLOY is not set" in caplog.text
        assert SECRET not in caplog.text
        served.env["SECRET_DEPLOY"] = SECRET  # read at each delivery: no restart needed
        assert (await deliver(served, PUSH)).status_code == 201


# -- many at once ---------------------------------------------------------------------------------


async def test_two_hundred_concurrent_deliveries_make_two_hundred_runs_in_fewer_transactions(
    make_settings: SettingsFactory,
) -> None:
    settings = make_settings(webhook_rate=10_000, dag_trigger_rate=10_000)
    release = anyio.Event()
    async with serving(settings, held_dag(release)) as served:
        await served.add_webhook("deploy", "held", SECRET)
        before = served.engine.store.statistics().transactions
        answers: dict[str, httpx.Response] = {}

        async def send(number: int) -> None:
            push = {**PUSH, "after": f"c0ffee{number}"}  # each push its own commit
            answers[f"d-{number}"] = await deliver(served, push, delivery=f"d-{number}")

        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                for number in range(200):
                    tg.start_soon(send, number)
        used = served.engine.store.statistics().transactions - before
        assert {answer.status_code for answer in answers.values()} == {201}
        runs = await served.engine.store.list_runs(dag_id="held", limit=1000)
        events = await served.engine.store.list_events(dag_id="held", limit=1000)
        release.set()
    assert len(runs) == len(events) == 200
    assert {answer.json()["run_id"] for answer in answers.values()} == {r.run_id for r in runs}
    assert used < 200  # group commit: deliveries shared transactions
