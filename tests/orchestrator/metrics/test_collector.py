"""Metrics of runs that start themselves: a file run trigger, its event, and a rescan."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families
from startkit import land, settle, starting_engine, until_runs, until_true

from orchestrator import DAG, task
from orchestrator.config import Settings
from orchestrator.metrics.instruments import EngineMetrics
from triggers.file import FileTrigger

SettingsFactory = Callable[..., Settings]


def ingest_dag(inbox: Path) -> DAG:
    with DAG("ingest", run_on=FileTrigger(directory=str(inbox), pattern="*.csv")) as dag:

        @task
        def consume() -> None:
            pass

        consume()
    return dag


def sample(metrics: EngineMetrics, name: str, **labels: str) -> float | None:
    for family in text_string_to_metric_families(metrics.exposition().decode()):
        for found in family.samples:
            if found.name == name and found.labels == labels:
                return found.value
    return None


async def test_a_landed_file_is_timed_to_its_first_task_and_a_rescan_is_deduplicated(
    make_settings: SettingsFactory, tmp_path: Path
) -> None:
    inbox = tmp_path / "incoming"
    inbox.mkdir()
    settings, dag = make_settings(), ingest_dag(inbox)
    async with starting_engine(settings, dag) as engine:
        metrics = EngineMetrics.attach(engine)
        assert sample(metrics, "orchestrator_run_triggers_waiting", kind="file") == 1
        land(inbox, "a.csv", "1,2\n")
        await until_runs(engine, "ingest", 1)
        latency = "orchestrator_event_to_task_start_seconds_count"
        assert sample(metrics, latency, kind="file") == 1
        assert sample(metrics, "orchestrator_events_deduplicated_total", dag_id="ingest") is None
        metrics.detach()

    # Reopened with a.csv still there: the scan yields it again, and no run follows.
    async with starting_engine(settings, dag) as engine:
        metrics = EngineMetrics.attach(engine)
        await until_true(lambda: engine.starter.duplicate_events["ingest"] == 1)
        await settle(engine)
        assert sample(metrics, "orchestrator_events_deduplicated_total", dag_id="ingest") == 1
        assert (
            sample(metrics, "orchestrator_event_to_task_start_seconds_count", kind="file") is None
        )
        assert len(await engine.store.list_runs(dag_id="ingest", limit=10)) == 1
