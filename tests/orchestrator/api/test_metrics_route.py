"""`GET /metrics` on a real server over a real engine: exact values after a known run.

The run has one task that succeeds, one that fails, retries once and fails again, and a
FileSensor deferred on an empty folder. Every scrape is parsed whole by prometheus_client's
own parser, so a malformed line fails the test, not just a missing value.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import anyio
from apikit import Served, hello_dag, serving
from prometheus_client.parser import text_string_to_metric_families
from sensorkit import DEADLINE, until_state

from orchestrator import DAG, task
from orchestrator.api.signatures import sign_github
from orchestrator.config import Settings
from orchestrator.state import RunState, TaskState
from sensors import FileSensor

SettingsFactory = Callable[..., Settings]
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
SECRET = "metrics-secret"
README = (Path(__file__).resolve().parents[3] / "README.md").read_text()


def metered_dag(incoming: Path) -> DAG:
    """`ok` succeeds, `flaky` fails twice (one retry), `landing` waits for a CSV."""
    with DAG("metered") as dag:

        @task(in_process=True)
        def ok() -> int:
            return 1

        @task(in_process=True, retries=1, retry_delay=0)
        def flaky() -> None:
            raise RuntimeError("always")

        ok()
        flaky()
        FileSensor(task_id="landing", directory=str(incoming), pattern="*.csv")
    return dag


async def scrape_text(served: Served) -> str:
    answer = await served.client.get("/metrics", headers=served.auth("read"))
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/plain; version=0.0.4")
    return answer.text


def parse(text: str) -> Samples:
    """Every sample, parsed by the reference parser (a malformed line raises)."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def scrape(served: Served) -> Samples:
    return parse(await scrape_text(served))


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


async def test_metrics_after_a_success_a_retried_failure_and_a_deferred_sensor(
    make_settings: SettingsFactory, tmp_path: Path
) -> None:
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    settings = make_settings(triggerer_capacity=10)
    async with serving(settings, metered_dag(incoming)) as served:
        engine = served.engine
        run_id = await engine.trigger("metered")
        await until_state(engine, run_id, "ok", TaskState.SUCCESS)
        await until_state(engine, run_id, "flaky", TaskState.FAILED)
        await until_state(engine, run_id, "landing", TaskState.DEFERRED)
        waiting = await scrape(served)

        (incoming / "batch.csv").write_text("a,b\n1,2\n")
        with anyio.fail_after(DEADLINE):
            record = await engine.wait(run_id)
        assert record.state is RunState.FAILED
        ended_text = await scrape_text(served)
    ended = parse(ended_text)

    task = {"dag_id": "metered"}
    finished = "orchestrator_task_instances_finished_total"
    assert value(waiting, finished, **task, task_id="ok", state="success") == 1
    assert value(waiting, finished, **task, task_id="flaky", state="failed") == 1
    assert value(waiting, "orchestrator_task_retries_total", **task, task_id="flaky") == 1
    duration = "orchestrator_task_duration_seconds_count"
    assert value(waiting, duration, **task, task_id="flaky") == 2  # both tries
    assert value(waiting, duration, **task, task_id="ok") == 1
    assert value(waiting, "orchestrator_task_queued_seconds_count", **task, task_id="flaky") == 2
    assert value(waiting, "orchestrator_triggers_waiting", kind="FileTrigger") == 1
    assert value(waiting, "orchestrator_triggerer_capacity_left") == 9
    assert value(waiting, "orchestrator_runs_running", dag_id="metered") == 1
    assert value(waiting, "orchestrator_runs_queued", dag_id="metered") == 0
    assert value(waiting, "orchestrator_worker_slots_used", pool="default") == 0
    assert value(waiting, "orchestrator_worker_slots_free", pool="default") == 2
    assert not [key for key in waiting if key[0] == "orchestrator_runs_finished_total"]
    assert not [key for key in waiting if key[0] == "orchestrator_triggers_fired_total"]
    assert (value(waiting, "orchestrator_store_transaction_seconds_count") or 0) >= 1
    assert [labels for name, labels in waiting if name == "orchestrator_build_info"]

    assert value(ended, finished, **task, task_id="landing", state="success") == 1
    assert value(ended, "orchestrator_triggers_fired_total", kind="FileTrigger") == 1
    assert value(ended, "orchestrator_triggers_waiting", kind="FileTrigger") is None
    assert value(ended, "orchestrator_triggerer_capacity_left") == 10
    assert value(ended, "orchestrator_runs_finished_total", dag_id="metered", state="failed") == 1
    assert value(ended, "orchestrator_run_duration_seconds_count", dag_id="metered") == 1
    assert value(ended, "orchestrator_runs_running", dag_id="metered") == 0
    assert value(ended, duration, **task, task_id="flaky") == 2  # no try since
    assert not [key for key in ended if "run_id" in dict(key[1])]  # never a run id label
    families = {family.name for family in text_string_to_metric_families(ended_text)}
    undocumented = {name for name in families if name.startswith("orchestrator_")} - {
        name for name in families if name in README
    }
    assert len(families) > 20 and not [name for name in families if name.endswith("_created")]
    assert not undocumented, "the README's Metrics section should list these"


def signed(body: bytes, delivery: str) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "X-GitHub-Event": "push",
        "X-GitHub-Delivery": delivery,
        "X-Hub-Signature-256": sign_github(SECRET.encode(), body),
    }


async def test_webhook_deliveries_are_counted_by_outcome_and_timed_to_the_first_task(
    make_settings: SettingsFactory,
) -> None:
    async with serving(make_settings(), hello_dag()) as served:
        await served.add_webhook("deploy", "hello", SECRET)
        body = json.dumps({"ref": "main"}).encode()
        created = await served.client.post(
            "/hooks/deploy", content=body, headers=signed(body, "d-1")
        )
        assert created.status_code == 201, created.text
        again = await served.client.post("/hooks/deploy", content=body, headers=signed(body, "d-1"))
        assert (again.status_code, again.json()["created"]) == (200, False)
        unsigned = await served.client.post("/hooks/deploy", content=body)
        assert unsigned.status_code == 401
        with anyio.fail_after(DEADLINE):
            await served.engine.wait(created.json()["run_id"])
        samples = await scrape(served)

    deliveries = "orchestrator_webhook_deliveries_total"
    assert value(samples, deliveries, outcome="created", reason="") == 1
    assert value(samples, deliveries, outcome="duplicate", reason="") == 1
    assert value(samples, deliveries, outcome="refused", reason="bad_signature") == 1
    assert value(samples, "orchestrator_event_to_task_start_seconds_count", kind="webhook") == 1
    assert value(samples, "orchestrator_runs_finished_total", dag_id="hello", state="success") == 1


async def test_metrics_need_a_read_token_unless_metrics_public(
    make_settings: SettingsFactory,
) -> None:
    async with serving(make_settings(), hello_dag()) as served:
        refused = await served.client.get("/metrics")
        assert refused.status_code == 401
        assert refused.json()["error"]["code"] == "missing_token"
    async with serving(make_settings(metrics_public=True), hello_dag()) as served:
        answer = await served.client.get("/metrics")
        assert answer.status_code == 200
        assert answer.headers["content-type"].startswith("text/plain; version=0.0.4")
        assert list(text_string_to_metric_families(answer.text))
        document = await served.client.get("/api/v1/openapi.json", headers=served.auth("read"))
        assert document.json()["paths"]["/metrics"]["get"]["security"] == []
