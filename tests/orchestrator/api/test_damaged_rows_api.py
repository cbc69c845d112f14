"""A damaged row in the API: listed with `"damaged": true` and what could be read, never a 500."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from apikit import hello_dag, serving
from damagekit import DAMAGES, damage, fill_state

from orchestrator.config import Settings

#: One damaged value in each table the API lists.
DAMAGED = ("runs.conf", "task_instances.next_call", "triggers.cursor", "events.payload")
DAMAGED_TOO = ("run_sources.kwargs", "webhooks.conf_map")


def _by(items: list[dict[str, Any]], field: str) -> dict[Any, dict[str, Any]]:
    return {item[field]: item for item in items}


async def test_every_listing_shows_the_damaged_row_and_goes_on(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings()
    await fill_state(settings.state_dir)
    damage(settings.state_dir, *(DAMAGES[name] for name in DAMAGED + DAMAGED_TOO))
    async with serving(settings, hello_dag()) as served:
        read, admin = served.auth("read"), served.auth("admin")
        answers = {
            path: await served.client.get(path, headers=admin if "hooks" in path else read)
            for path in (
                "/api/v1/runs?dag_id=etl",
                "/api/v1/runs/run-1",
                "/api/v1/runs/run-1/tasks",
                "/api/v1/triggers",
                "/api/v1/events",
                "/api/v1/webhooks",
            )
        }
    assert {path: answer.status_code for path, answer in answers.items()} == dict.fromkeys(
        answers, 200
    )
    runs = _by(answers["/api/v1/runs?dag_id=etl"].json()["runs"], "run_id")
    assert runs["run-1"]["damaged"] is True and runs["run-1"]["conf"] == {}
    assert runs["run-1"]["damage"].startswith("conf is not valid JSON")
    assert runs["run-2"]["damaged"] is False and runs["run-2"]["conf"] == {"n": 2}
    assert "damage" not in runs["run-2"]
    shown = answers["/api/v1/runs/run-1"].json()
    assert shown["run"]["damaged"] is True and shown["task_instances"][0]["damaged"] is True
    assert answers["/api/v1/runs/run-1/tasks"].json()["task_instances"][0]["damaged"] is True
    waiting = answers["/api/v1/triggers"].json()
    deferred = _by(waiting["deferred"], "run_id")
    assert deferred["run-1"]["damaged"] is True and deferred["run-2"]["damaged"] is False
    assert deferred["run-1"]["kwargs"] == {"moment": 1_800_003_600.0}  # what could be read
    sources = _by(waiting["run_triggers"], "source")
    assert sources["files-1"]["damaged"] is True and sources["files-2"]["damaged"] is False
    events = _by(answers["/api/v1/events"].json()["events"], "event_id")
    assert events[1]["damaged"] is True and events[1]["payload"] == {}
    assert events[2]["damaged"] is False
    hooks = _by(answers["/api/v1/webhooks"].json()["webhooks"], "name")
    assert hooks["hook-1"]["damaged"] is True and hooks["hook-1"]["filters"] == [
        ["ref", "refs/heads/main"]
    ]
    assert hooks["hook-2"]["damaged"] is False


async def test_a_damaged_webhook_takes_no_delivery(
    make_settings: Callable[..., Settings],
) -> None:
    import hashlib
    import hmac

    settings = make_settings()
    await fill_state(settings.state_dir)
    damage(settings.state_dir, DAMAGES["webhooks.filters"])
    body = b'{"ref": "refs/heads/main", "after": "abc"}'
    signature = hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
    headers = {
        "Content-Type": "application/json",
        "X-GitHub-Event": "push",
        "X-GitHub-Delivery": "d-1",
        "X-Hub-Signature-256": f"sha256={signature}",
    }
    async with serving(settings, hello_dag()) as served:
        served.env["HOOK_SECRET"] = "s3cret"
        answer = await served.client.post("/hooks/hook-1", content=body, headers=headers)
        runs = await served.engine.store.list_runs(dag_id="etl")
    assert answer.status_code == 503
    assert answer.json()["error"]["code"] == "webhook_damaged"
    assert len(runs) == 2  # no run started
