"""Airflow's S3KeySensor and HttpSensor, from a DAG file run unchanged, against moto's S3 and a
scripted HTTP server on loopback; their connections come from AIRFLOW_CONN_*."""

from __future__ import annotations

import json
from collections.abc import Callable

import boto3
import pytest
from airflowkit import run_dag
from httpserver import Reply, serve
from s3server import REGION, running_s3_server

from orchestrator.airflow_compat.exceptions import AirflowException
from orchestrator.airflow_compat.imports import airflow_imports
from orchestrator.config import Settings
from orchestrator.state import RunState, TaskState

SettingsFactory = Callable[..., Settings]


def _put(endpoint_url: str, *keys: str) -> None:
    client = boto3.client("s3", endpoint_url=endpoint_url, region_name=REGION)
    client.create_bucket(Bucket="lake")
    for key in keys:
        client.put_object(Bucket="lake", Key=key, Body=b"x")


async def test_s3_and_http_sensors_wait_on_the_native_triggers(
    make_settings: SettingsFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    with running_s3_server(monkeypatch) as endpoint_url, serve() as server:
        _put(endpoint_url, "raw/2024-01-02/_SUCCESS", "raw/2024-01-02/part-1.csv")
        aws = {"conn_type": "aws", "extra": {"endpoint_url": endpoint_url}}
        monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", json.dumps(aws))
        monkeypatch.setenv("AIRFLOW_CONN_HTTP_DEFAULT", server.url)
        server.script("/health", Reply.text("ok"))
        running, done = Reply.json({"state": "running"}), Reply.json({"state": "done"})
        server.script("/api/job?id=42", running, Reply.text("gone", status=404), done)
        server.script("/api/job", running, done)
        state, _, states = await run_dag(
            make_settings(in_process=False), "provider_sensors", {"day": "2024-01-02"}
        )
    assert state is RunState.SUCCESS, states
    assert set(states.values()) == {TaskState.SUCCESS}
    assert server.hits("/api/job?id=42") == 3  # running, then a 404 (keeps poking), then done
    assert server.hits("/api/job") == 2
    assert server.hits("/health") >= 1


def test_s3_key_sensor_refuses_what_it_cannot_wait_for() -> None:
    with airflow_imports():
        from airflow import DAG
        from airflow.providers.amazon.aws.sensors.s3 import S3KeySensor

        with DAG("refusals", schedule=None):
            with pytest.raises(AirflowException, match="one bucket_key"):
                S3KeySensor(task_id="two", bucket_key=["s3://a/b", "s3://a/c"])
            with pytest.raises(AirflowException, match="check_fn"):
                S3KeySensor(task_id="fn", bucket_key="s3://a/b", check_fn=lambda files: True)
            both = S3KeySensor(task_id="both", bucket_key="s3://a/b", bucket_name="a")
            with pytest.raises(AirflowException, match="relative path"):
                both.native_trigger({})
