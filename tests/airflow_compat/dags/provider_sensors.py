"""The amazon provider's S3KeySensor and the http provider's HttpSensor, with their connections
from AIRFLOW_CONN_AWS_DEFAULT and AIRFLOW_CONN_HTTP_DEFAULT."""
from datetime import datetime

from airflow import DAG
from airflow.providers.amazon.aws.sensors.s3 import S3KeySensor
from airflow.providers.http.sensors.http import HttpSensor


def job_is_done(response):
    return response.json()["state"] == "done"


def status_is(response, params):
    return response.json()["state"] == params["wanted"]


with DAG(
    "provider_sensors",
    schedule=None,
    start_date=datetime(2024, 1, 1),
    params={"day": "2024-01-01", "wanted": "done"},
):
    by_key = S3KeySensor(
        task_id="by_key",
        bucket_name="lake",
        bucket_key="raw/{{ params.day }}/_SUCCESS",
        poke_interval=0.05,
        timeout=60,
    )
    by_url_wildcard = S3KeySensor(
        task_id="by_url_wildcard",
        bucket_key="s3://lake/raw/*/part-*.csv",
        wildcard_match=True,
        aws_conn_id="aws_default",
        poke_interval=0.05,
        timeout=60,
    )
    health = HttpSensor(task_id="health", endpoint="health", poke_interval=0.05, timeout=60)
    job = HttpSensor(
        task_id="job",
        http_conn_id="http_default",
        endpoint="api/job",
        request_params={"id": "42"},
        response_check=job_is_done,
        poke_interval=0.01,
        timeout=60,
    )
    with_context = HttpSensor(
        task_id="with_context",
        endpoint="api/job",
        response_check=status_is,
        poke_interval=0.01,
        timeout=60,
    )
