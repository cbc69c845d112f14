"""Replays of body-signed deliveries, delivery ids, and how deliveries are read.

A GitHub or plain-HMAC signature covers the body, not the delivery id: the same signed body
sent again within `webhook_replay_window` gets the first run, whatever id it carries.
"""

from __future__ import annotations

import gc
import json
from collections.abc import Callable
from urllib.parse import urlencode

import anyio
import pytest
from apikit import hello_dag, serving

from orchestrator.api.replays import ReplayGuard
from orchestrator.api.signatures import sign_github, sign_hmac
from orchestrator.clock import FakeClock
from orchestrator.config import Settings

SettingsFactory = Callable[..., Settings]
SECRET = "replay-secret"
BODY = json.dumps({"ref": "refs/heads/main", "after": "c0ffee"}).encode()


def github(body: bytes, delivery: str | None) -> dict[str, str]:
    headers = {"Content-Type": "application/json", "X-GitHub-Event": "push"}
    if delivery is not None:
        headers["X-GitHub-Delivery"] = delivery
    return {**headers, "X-Hub-Signature-256": sign_github(SECRET.encode(), body)}


async def test_a_github_body_replayed_under_new_ids_gets_the_first_run_until_the_window_ends(
    make_settings: SettingsFactory,
) -> None:
    clock = FakeClock()
    settings = make_settings(webhook_replay_window=60)
    async with serving(settings, hello_dag(), clock=clock) as served:
        await served.add_webhook("deploy", "hello", SECRET)
        first = await served.client.post("/hooks/deploy", content=BODY, headers=github(BODY, "a"))
        assert first.status_code == 201, first.text
        for delivery in ("b", "c"):
            again = await served.client.post(
                "/hooks/deploy", content=BODY, headers=github(BODY, delivery)
            )
            assert again.status_code == 200, again.text
            assert again.json()["run_id"] == first.json()["run_id"]
            assert again.json()["created"] is False
        clock.advance(61)  # past the window: the same body is a new delivery again
        later = await served.client.post("/hooks/deploy", content=BODY, headers=github(BODY, "d"))
        assert later.status_code == 201, later.text
        assert len(await served.engine.store.list_runs(dag_id="hello")) == 2


async def test_a_github_delivery_without_its_id_is_refused(make_settings: SettingsFactory) -> None:
    async with serving(make_settings(), hello_dag()) as served:
        await served.add_webhook("deploy", "hello", SECRET)
        answer = await served.client.post("/hooks/deploy", content=BODY, headers=github(BODY, None))
        assert answer.status_code == 400, answer.text
        assert answer.json()["error"]["code"] == "missing_delivery_id"
        assert await served.engine.store.list_runs(dag_id="hello") == []


async def test_a_plain_hmac_body_replayed_with_or_without_an_id_starts_one_run(
    make_settings: SettingsFactory,
) -> None:
    signature = {"X-Signature": sign_hmac(SECRET.encode(), BODY)}
    async with serving(make_settings(), hello_dag()) as served:
        await served.add_webhook("acme", "hello", SECRET, kind="hmac")
        answers = [
            await served.client.post("/hooks/acme", content=BODY, headers=headers)
            for headers in (signature, {**signature, "Idempotency-Key": "new"}, signature)
        ]
        assert [answer.status_code for answer in answers] == [201, 200, 200]
        assert len({answer.json()["run_id"] for answer in answers}) == 1
        assert len(await served.engine.store.list_runs(dag_id="hello")) == 1


async def test_concurrent_replays_of_one_body_start_one_run(
    make_settings: SettingsFactory,
) -> None:
    settings = make_settings(webhook_rate=10_000, dag_trigger_rate=10_000)
    async with serving(settings, hello_dag()) as served:
        await served.add_webhook("deploy", "hello", SECRET)
        statuses: list[int] = []

        async def send(number: int) -> None:
            headers = github(BODY, f"id-{number}")
            answer = await served.client.post("/hooks/deploy", content=BODY, headers=headers)
            statuses.append(answer.status_code)

        async with anyio.create_task_group() as tg:
            for number in range(20):
                tg.start_soon(send, number)
        assert sorted(statuses) == [200] * 19 + [201]
        assert len(await served.engine.store.list_runs(dag_id="hello")) == 1


@pytest.mark.parametrize(
    "content_type",
    ["application/x-www-form-urlencoded", "Application/X-WWW-Form-Urlencoded; charset=utf-8"],
)
async def test_form_encoded_deliveries_are_recognised_whatever_the_case(
    make_settings: SettingsFactory, content_type: str
) -> None:
    body = urlencode({"payload": BODY.decode()}).encode()
    headers = {**github(body, "form-1"), "Content-Type": content_type}
    async with serving(make_settings(), hello_dag()) as served:
        await served.add_webhook("deploy", "hello", SECRET)
        answer = await served.client.post("/hooks/deploy", content=body, headers=headers)
        assert answer.status_code == 201, answer.text
        run = await served.engine.store.get_run(answer.json()["run_id"])
        assert run is not None
        assert run.conf["payload"] == json.loads(BODY)


async def test_remembered_bodies_cost_the_cycle_collector_nothing_once_settled() -> None:
    """The window keeps up to 100,000 bodies, and every full collection of the daemon scans
    what the collector tracks: a settled body must not be among it (with an Event each, they
    made the pauses that were the p99 of 64 webhook senders)."""
    guard = ReplayGuard(FakeClock())
    keys = [ReplayGuard.key("hook", str(index).encode()) for index in range(10_000)]
    gc.collect()
    before = len(gc.get_objects())
    for index, key in enumerate(keys):
        assert await guard.claim(key, 600.0) is None
        guard.settle(key, f"run-{index}")
    gc.collect()
    tracked = len(gc.get_objects()) - before
    replay = await guard.claim(keys[123], 600.0)
    assert len(guard) == 10_000
    assert tracked < 100  # the guard's dict, not one object per body
    assert replay == "run-123"


async def test_a_copy_waits_for_the_first_delivery_and_gets_its_run_or_tries_afresh() -> None:
    guard = ReplayGuard(FakeClock())
    settled, released = ReplayGuard.key("hook", b"one"), ReplayGuard.key("hook", b"two")
    answers: dict[bytes, str | None] = {}

    async def copy(key: bytes) -> None:
        answers[key] = await guard.claim(key, 600.0)

    for key in (settled, released):
        assert await guard.claim(key, 600.0) is None  # the first delivery of each
    async with anyio.create_task_group() as group:
        group.start_soon(copy, settled)
        group.start_soon(copy, released)
        await anyio.wait_all_tasks_blocked()
        waiting = dict(answers)
        guard.settle(settled, "run-1")
        guard.release(released)  # its run failed before it was committed
    assert waiting == {}  # both copies waited for their first delivery
    assert answers == {settled: "run-1", released: None}  # the second copy starts afresh


async def test_a_copy_waiting_on_a_body_forgotten_for_room_tries_afresh() -> None:
    """A pending body pushed out of a full window wakes its waiting copy, as a release does;
    bodies nobody waited on need no wake-up (their event is made by the first waiter)."""
    guard = ReplayGuard(FakeClock(), max_remembered=2)
    first, second, third = (ReplayGuard.key("hook", body) for body in (b"1", b"2", b"3"))
    answers: list[str | None] = []

    async def copy() -> None:
        answers.append(await guard.claim(first, 600.0))

    assert await guard.claim(first, 600.0) is None
    async with anyio.create_task_group() as group:
        group.start_soon(copy)
        await anyio.wait_all_tasks_blocked()
        assert answers == []
        assert await guard.claim(second, 600.0) is None
        assert await guard.claim(third, 600.0) is None  # the window is full: `first` goes
    assert answers == [None]  # woken, it found no claim and made its own
    guard.settle(third, "run-3")
    assert await guard.claim(third, 600.0) == "run-3"
