"""The REST routes against a real server: what each answers, and what it refuses and why."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anyio
from apikit import Served, serving
from starlette.routing import Route

from orchestrator import DAG, task
from orchestrator.api.app import create_app
from orchestrator.config import Settings


def pipeline() -> DAG:
    with DAG("pipeline", description="extract then load") as dag:

        @task
        def extract() -> int:
            print("extracted 3 rows")
            return 3

        @task
        def load(rows: int) -> str:
            return f"loaded {rows}"

        load(extract())
    return dag


async def until_finished(served: Served, run_id: str) -> dict[str, Any]:
    with anyio.fail_after(15):
        record = await served.engine.wait(run_id)
    answer = await served.client.get(f"/api/v1/runs/{run_id}", headers=served.auth("read"))
    assert answer.status_code == 200
    assert answer.json()["run"]["state"] == record.state.value
    shown: dict[str, Any] = answer.json()
    return shown


async def trigger(served: Served, dag_id: str = "pipeline", **body: Any) -> Any:
    url = f"/api/v1/dags/{dag_id}/runs"
    return await served.client.post(url, json=body, headers=served.auth("trigger"))


async def test_dags_are_listed_and_shown_with_their_tasks(
    make_settings: Callable[..., Settings],
) -> None:
    async with serving(make_settings(), pipeline()) as served:
        listed = (await served.client.get("/api/v1/dags", headers=served.auth("read"))).json()
        shown = await served.client.get("/api/v1/dags/pipeline", headers=served.auth("read"))
        missing = await served.client.get("/api/v1/dags/pipelin", headers=served.auth("read"))
    assert [dag["dag_id"] for dag in listed["dags"]] == ["pipeline"]
    assert listed["dags"][0]["paused"] is False and listed["dags"][0]["tasks"] == 2
    tasks = {item["task_id"]: item["upstream"] for item in shown.json()["task_list"]}
    assert tasks == {"extract": [], "load": ["extract"]}
    assert missing.status_code == 404
    error = missing.json()["error"]
    assert error["code"] == "dag_not_found" and "pipeline" in error["message"]  # did you mean


async def test_a_triggered_run_carries_its_conf_and_its_tasks_logs_can_be_read(
    make_settings: Callable[..., Settings],
) -> None:
    async with serving(make_settings(), pipeline()) as served:
        answer = await trigger(served, conf={"day": "2026-11-21"})
        assert answer.status_code == 201
        run = answer.json()["run"]
        assert run["conf"] == {"day": "2026-11-21"} and run["run_type"] == "manual"
        shown = await until_finished(served, run["run_id"])
        base = f"/api/v1/runs/{run['run_id']}/tasks"
        tasks = (await served.client.get(base, headers=served.auth("read"))).json()
        one = (await served.client.get(f"{base}/extract", headers=served.auth("read"))).json()
        log = await served.client.get(f"{base}/extract/log", headers=served.auth("read"))
        first = await served.client.get(
            f"{base}/extract/log?try_number=1", headers=served.auth("read")
        )
        none = await served.client.get(
            f"{base}/extract/log?try_number=2", headers=served.auth("read")
        )
        ghost = await served.client.get(f"{base}/nothing", headers=served.auth("read"))
    assert shown["run"]["state"] == "success"
    assert {ti["task_id"]: ti["state"] for ti in tasks["task_instances"]} == {
        "extract": "success",
        "load": "success",
    }
    assert [attempt["try_number"] for attempt in one["tries"]] == [1]
    assert log.status_code == 200 and "extracted 3 rows" in log.text
    assert log.headers["content-type"].startswith("text/plain")
    assert first.text == log.text
    assert none.status_code == 404 and none.json()["error"]["code"] == "try_not_found"
    assert ghost.status_code == 404 and ghost.json()["error"]["code"] == "task_not_found"


async def test_an_idempotency_key_gives_back_the_first_run_from_the_body_or_the_header(
    make_settings: Callable[..., Settings],
) -> None:
    async with serving(make_settings(), pipeline()) as served:
        first = await trigger(served, idempotency_key="nightly-42")
        again = await trigger(served, idempotency_key="nightly-42")
        url, headers = "/api/v1/dags/pipeline/runs", {**served.auth("trigger")}
        by_header = await served.client.post(url, headers={**headers, "Idempotency-Key": "h-1"})
        header_again = await served.client.post(url, headers={**headers, "Idempotency-Key": "h-1"})
        listed = await served.client.get("/api/v1/runs", headers=served.auth("read"))
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["run"]["run_id"] == first.json()["run"]["run_id"]
    assert again.json()["created"] is False
    assert by_header.status_code == 201 and header_again.status_code == 200
    assert header_again.json()["run"]["run_id"] == by_header.json()["run"]["run_id"]
    assert len(listed.json()["runs"]) == 2


async def test_an_idempotency_key_header_is_bounded_like_the_body_field(
    make_settings: Callable[..., Settings],
) -> None:
    async with serving(make_settings(), pipeline()) as served:
        url, headers = "/api/v1/dags/pipeline/runs", {**served.auth("trigger")}
        longest = await served.client.post(url, headers={**headers, "Idempotency-Key": "k" * 512})
        too_long = await served.client.post(url, headers={**headers, "Idempotency-Key": "k" * 513})
        listed = await served.client.get("/api/v1/runs", headers=served.auth("read"))
    assert longest.status_code == 201
    assert too_long.status_code == 400
    error = too_long.json()["error"]
    assert error["code"] == "bad_request"
    assert error["message"] == (
        "the Idempotency-Key header must be a non-empty string of at most 512 characters"
    )
    assert len(listed.json()["runs"]) == 1


async def test_bad_trigger_requests_get_specific_errors_and_start_nothing(
    make_settings: Callable[..., Settings],
) -> None:
    async with serving(make_settings(api_max_body=256, api_max_json_depth=4), pipeline()) as s:
        cases = [
            (await trigger(s, conf=[1, 2]), 400, "not_an_object"),
            (await trigger(s, conf="x"), 400, "not_an_object"),
            (await trigger(s, "nope"), 404, "dag_not_found"),
            (await trigger(s, conf={"a": {"b": {"c": {"d": {}}}}}), 400, "json_too_deep"),
            (await trigger(s, conf={"blob": "x" * 300}), 413, "body_too_large"),
            (await trigger(s, idempotency_key=7), 400, "bad_request"),
        ]
        raw = await s.client.post(
            "/api/v1/dags/pipeline/runs", content=b"{nope", headers=s.auth("trigger")
        )
        cases.append((raw, 400, "invalid_json"))
        array = await s.client.post(
            "/api/v1/dags/pipeline/runs", content=b"[]", headers=s.auth("trigger")
        )
        cases.append((array, 400, "not_an_object"))
        runs = (await s.client.get("/api/v1/runs", headers=s.auth("read"))).json()["runs"]
    for answer, status, code in cases:
        assert (answer.status_code, answer.json()["error"]["code"]) == (status, code), answer.text
    assert runs == []


async def test_a_paused_dag_refuses_runs_with_409_until_unpaused(
    make_settings: Callable[..., Settings],
) -> None:
    async with serving(make_settings(), pipeline()) as served:
        admin = served.auth("admin")
        paused = await served.client.post("/api/v1/dags/pipeline/pause", headers=admin)
        refused = await trigger(served)
        listed = (await served.client.get("/api/v1/dags", headers=admin)).json()["dags"]
        await served.client.post("/api/v1/dags/pipeline/unpause", headers=admin)
        accepted = await trigger(served)
    assert paused.json() == {"dag_id": "pipeline", "paused": True}
    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "dag_paused"
    assert "unpause" in refused.json()["error"]["message"]
    assert listed[0]["paused"] is True
    assert accepted.status_code == 201


async def test_runs_are_listed_newest_first_a_page_at_a_time_and_filtered(
    make_settings: Callable[..., Settings],
) -> None:
    async with serving(make_settings(), pipeline()) as served:
        made = [(await trigger(served)).json()["run"]["run_id"] for _ in range(5)]
        for run_id in made:
            await until_finished(served, run_id)
        pages: list[list[str]] = []
        url = "/api/v1/runs?limit=2&dag_id=pipeline"
        while url:
            page = (await served.client.get(url, headers=served.auth("read"))).json()
            pages.append([run["run_id"] for run in page["runs"]])
            following = page["next"]
            url = f"/api/v1/runs?limit=2&dag_id=pipeline&before={following}" if following else ""
        failed = await served.client.get("/api/v1/runs?state=failed", headers=served.auth("read"))
        wrong = await served.client.get("/api/v1/runs?state=done", headers=served.auth("read"))
        huge = await served.client.get("/api/v1/runs?limit=100000", headers=served.auth("read"))
    assert [len(page) for page in pages] == [2, 2, 1]
    assert [run_id for page in pages for run_id in page] == made[::-1]
    assert failed.json()["runs"] == []
    assert wrong.status_code == 400 and "success" in wrong.json()["error"]["message"]
    assert huge.status_code == 400 and "500" in huge.json()["error"]["message"]


async def test_cancel_a_finished_or_unknown_run_is_refused_clearly(
    make_settings: Callable[..., Settings],
) -> None:
    async with serving(make_settings(), pipeline()) as served:
        run_id = (await trigger(served)).json()["run"]["run_id"]
        await until_finished(served, run_id)
        url = f"/api/v1/runs/{run_id}/cancel"
        finished = await served.client.post(url, headers=served.auth("trigger"))
        unknown = await served.client.post(
            "/api/v1/runs/nope/cancel", headers=served.auth("trigger")
        )
    assert finished.status_code == 409 and finished.json()["error"]["code"] == "run_finished"
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "run_not_found"


async def test_events_version_triggers_and_errors_for_routes_that_do_not_exist(
    make_settings: Callable[..., Settings],
) -> None:
    async with serving(make_settings(), pipeline()) as served:
        read = served.auth("read")
        version = (await served.client.get("/api/v1/version", headers=read)).json()
        triggers = (await served.client.get("/api/v1/triggers", headers=read)).json()
        events = (await served.client.get("/api/v1/events", headers=read)).json()
        errors = (await served.client.get("/api/v1/import-errors", headers=read)).json()
        nowhere = await served.client.get("/api/v2/everything", headers=read)
        wrong_method = await served.client.delete("/api/v1/dags", headers=read)
    assert version["api"] == "v1" and version["version"]
    assert triggers == {"deferred": [], "run_triggers": []}
    assert events == {"events": [], "next": None}
    assert errors == {"import_errors": []}
    assert nowhere.status_code == 404 and nowhere.json()["error"]["code"] == "not_found"
    assert wrong_method.status_code == 405
    assert wrong_method.json()["error"]["code"] == "method_not_allowed"


async def test_admins_create_list_and_revoke_tokens_and_a_token_is_shown_only_once(
    make_settings: Callable[..., Settings],
) -> None:
    async with serving(make_settings(), pipeline()) as served:
        admin = served.auth("admin")
        made = await served.client.post(
            "/api/v1/tokens",
            json={"scope": "trigger", "name": "ci", "expires_in": 3600},
            headers=admin,
        )
        text, token_id = made.json()["token"], made.json()["token_id"]
        works = await trigger_with(served, text)
        listed = await served.client.get("/api/v1/tokens", headers=admin)
        revoked = await served.client.delete(f"/api/v1/tokens/{token_id}", headers=admin)
        refused = await trigger_with(served, text)
        bad_scope = await served.client.post(
            "/api/v1/tokens", json={"scope": "root"}, headers=admin
        )
    assert made.status_code == 201 and made.json()["scope"] == "trigger"
    assert made.json()["expires_at"] is not None
    assert works.status_code == 201
    assert text not in listed.text and "secret_hash" not in listed.text
    assert {token["name"] for token in listed.json()["tokens"]} >= {"ci", "test-admin"}
    assert revoked.status_code == 200
    assert refused.status_code == 401 and refused.json()["error"]["code"] == "revoked_token"
    assert bad_scope.status_code == 400 and "admin" in bad_scope.json()["error"]["message"]


async def trigger_with(served: Served, token: str) -> Any:
    headers = {"Authorization": f"Bearer {token}"}
    return await served.client.post("/api/v1/dags/pipeline/runs", headers=headers)


async def test_admins_add_and_remove_webhooks_and_bad_definitions_are_refused(
    make_settings: Callable[..., Settings],
) -> None:
    async with serving(make_settings(), pipeline()) as served:
        admin = served.auth("admin")
        served.env["HOOK_SECRET"] = "s3cret-value"
        body = {"name": "etl", "dag_id": "pipeline", "secret_env": "HOOK_SECRET"}
        added = await served.client.post("/api/v1/webhooks", json=body, headers=admin)
        twice = await served.client.post("/api/v1/webhooks", json=body, headers=admin)
        listed = await served.client.get("/api/v1/webhooks", headers=admin)
        no_dag = await served.client.post(
            "/api/v1/webhooks", json={**body, "name": "x", "dag_id": "nope"}, headers=admin
        )
        extra = await served.client.post(
            "/api/v1/webhooks", json={**body, "name": "y", "secret": "inline"}, headers=admin
        )
        removed = await served.client.delete("/api/v1/webhooks/etl", headers=admin)
        gone = await served.client.post("/hooks/etl", content=b"{}")
    assert added.status_code == 201 and added.json()["name"] == "etl"
    assert twice.status_code == 400 and "etl" in twice.json()["error"]["message"]
    assert [hook["name"] for hook in listed.json()["webhooks"]] == ["etl"]
    assert "s3cret-value" not in listed.text
    assert no_dag.status_code == 404
    assert extra.status_code == 400 and "secret" in extra.json()["error"]["message"]
    assert removed.status_code == 200
    assert gone.status_code == 401  # as for any name that is not a webhook


async def test_health_answers_without_a_token_and_says_when_the_daemon_stops(
    make_settings: Callable[..., Settings],
) -> None:
    async with serving(make_settings(), pipeline()) as served:
        ok = await served.client.get("/api/v1/health")
        served.api.stopping = True
        stopping = await served.client.get("/api/v1/health")
        refused = await trigger(served)
    assert (ok.status_code, ok.json()["status"]) == (200, "ok")
    assert ok.json()["executor"] == {
        "kind": "local",
        "connected": True,
        "address": None,
        "workers": ok.json()["executor"]["workers"],
        "detail": f"{ok.json()['executor']['workers']} worker processes",
    }
    assert (stopping.status_code, stopping.json()) == (503, {"status": "stopping"})
    assert refused.status_code == 503 and refused.json()["error"]["code"] == "stopping"


async def test_the_webhook_route_is_tried_first_and_every_other_route_still_answers(
    make_settings: Callable[..., Settings],
) -> None:
    """Deliveries are most of the traffic: Starlette tries routes in order, hooks first."""
    async with serving(make_settings()) as served:
        routes = create_app(served.api).routes
        assert isinstance(routes[0], Route) and routes[0].path == "/hooks/{name}"
        health = await served.client.get("/api/v1/health")
        assert health.status_code == 200
