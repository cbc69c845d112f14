"""The counters and histograms, fed committed changes by hand: exact values, safe labels."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from orchestrator.changes import EventRecorded, RunChanged, TaskChanged
from orchestrator.metrics.instruments import EngineMetrics
from orchestrator.metrics.kinds import source_kind
from orchestrator.state import RunState, TaskState

START = 1_700_000_000.0


def task_changed(task_id: str, state: TaskState, at: float, run_id: str = "r1") -> TaskChanged:
    return TaskChanged(
        run_id=run_id,
        dag_id="etl",
        task_id=task_id,
        map_index=-1,
        state=state,
        try_number=1,
        at=at,
    )


def samples(metrics: EngineMetrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = metrics.exposition().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_a_task_id_with_quotes_newlines_and_backslashes_is_escaped_and_parses_back() -> None:
    metrics = EngineMetrics()
    odd = 'say "hi"\nthen\\go'
    metrics.observe(task_changed(odd, TaskState.SUCCESS, START))
    metrics.webhook_delivery("refused", 'a "reason"\n')
    text = metrics.exposition().decode()
    assert '\\"hi\\"\\nthen\\\\go' in text  # escaped on one line
    found = samples(metrics)
    key = (("dag_id", "etl"), ("state", "success"), ("task_id", odd))
    assert found[("orchestrator_task_instances_finished_total", key)] == 1
    refused = (("outcome", "refused"), ("reason", 'a "reason"\n'))
    assert found[("orchestrator_webhook_deliveries_total", refused)] == 1


def test_durations_come_from_the_changes_own_moments() -> None:
    metrics = EngineMetrics()
    metrics.observe(RunChanged(run_id="r1", dag_id="etl", state=RunState.RUNNING, at=START))
    metrics.observe(task_changed("load", TaskState.SCHEDULED, START))
    metrics.observe(task_changed("load", TaskState.QUEUED, START + 1))
    metrics.observe(task_changed("load", TaskState.RUNNING, START + 3))
    metrics.observe(task_changed("load", TaskState.SUCCESS, START + 10))
    metrics.observe(RunChanged(run_id="r1", dag_id="etl", state=RunState.SUCCESS, at=START + 12))
    found = samples(metrics)
    task = (("dag_id", "etl"), ("task_id", "load"))
    assert found[("orchestrator_task_queued_seconds_sum", task)] == 3
    assert found[("orchestrator_task_duration_seconds_sum", task)] == 7
    assert found[("orchestrator_run_duration_seconds_sum", (("dag_id", "etl"),))] == 12
    run = (("dag_id", "etl"), ("state", "success"))
    assert found[("orchestrator_runs_finished_total", run)] == 1


def test_a_scheduled_run_that_starts_late_and_an_event_run_are_timed() -> None:
    metrics = EngineMetrics()
    late = RunChanged(
        run_id="r1", dag_id="etl", state=RunState.RUNNING, at=START + 90, scheduled_for=START
    )
    metrics.observe(late)
    metrics.observe(
        EventRecorded(
            dag_id="etl",
            source="FileTrigger(directory='in', pattern='*.csv')",
            dedup_key="k",
            run_id="r2",
            at=START + 1,
            received_at=START,
        )
    )
    metrics.observe(task_changed("sense", TaskState.DEFERRED, START + 0.25, run_id="r2"))
    metrics.observe(task_changed("other", TaskState.RUNNING, START + 5, run_id="r2"))  # not first
    found = samples(metrics)
    assert found[("orchestrator_schedule_delay_seconds_sum", (("dag_id", "etl"),))] == 90
    file = (("kind", "file"),)
    assert found[("orchestrator_event_to_task_start_seconds_count", file)] == 1
    assert found[("orchestrator_event_to_task_start_seconds_sum", file)] == 0.25


def test_every_finished_state_and_each_retry_is_counted_and_arming_counts_nothing() -> None:
    metrics = EngineMetrics()
    for index in range(3):  # sensors armed: no run waits on an event, nothing to count
        metrics.observe(task_changed(f"sense{index}", TaskState.DEFERRED, START))
    metrics.observe(task_changed("flaky", TaskState.UP_FOR_RETRY, START))
    finished = [TaskState.SUCCESS, TaskState.FAILED, TaskState.SKIPPED]
    finished += [TaskState.UPSTREAM_FAILED, TaskState.CANCELLED]
    for state in finished:
        metrics.observe(task_changed(f"t_{state.value}", state, START))
    found = samples(metrics)
    assert (
        found[("orchestrator_task_retries_total", (("dag_id", "etl"), ("task_id", "flaky")))] == 1
    )
    counted = {
        dict(labels)["state"]: value
        for (name, labels), value in found.items()
        if name == "orchestrator_task_instances_finished_total"
    }
    assert counted == {state.value: 1 for state in finished}
    assert not [name for name, _ in found if name.startswith("orchestrator_event_to_task")]


@pytest.mark.parametrize(
    ("source", "kind"),
    [
        ("FileTrigger(directory='data', pattern='*')", "file"),
        ("S3Trigger(bucket='b', prefix='raw/')", "s3"),
        ("webhook deploy", "webhook"),
        ("asset s3://bucket/model", "asset"),
        ("TimeTrigger(moment=1.0)", "time"),
        ("dag upstream success", "run"),
        ("MyOwnTrigger()", "other"),
        ("", "other"),
    ],
)
def test_an_event_source_maps_to_a_bounded_kind(source: str, kind: str) -> None:
    assert source_kind(source) == kind


def test_kept_children_count_each_label_set_apart_and_across_calls() -> None:
    metrics = EngineMetrics()
    for run_id in ("r1", "r2", "r3"):
        metrics.observe(task_changed("load", TaskState.SUCCESS, START, run_id=run_id))
    metrics.observe(task_changed("load", TaskState.FAILED, START))
    for outcome in ("created", "created", "duplicate"):
        metrics.webhook_delivery(outcome)
    found = samples(metrics)
    finished = "orchestrator_task_instances_finished_total"
    for state, count in (("success", 3), ("failed", 1)):
        key = (("dag_id", "etl"), ("state", state), ("task_id", "load"))
        assert found[(finished, key)] == count
    deliveries = "orchestrator_webhook_deliveries_total"
    assert found[(deliveries, (("outcome", "created"), ("reason", "")))] == 2
    assert found[(deliveries, (("outcome", "duplicate"), ("reason", "")))] == 1
