"""retries with retry_delay and retry_exponential_backoff; on_retry_callback after each failed try."""
from datetime import timedelta
from pathlib import Path

import pendulum

from airflow import DAG
from airflow.models import Variable
from airflow.operators.python import PythonOperator


def flaky(ti):
    if ti.try_number < 3:
        raise RuntimeError(f"try {ti.try_number} failed")
    return f"succeeded on try {ti.try_number}"


def note_retry(context):
    folder = Path(Variable.get("callback_folder"))
    (folder / f"retry-{context['ti'].try_number}").write_text(str(context["exception"]))


with DAG(
    "retry_backoff",
    schedule=None,
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    default_args={
        "retries": 3,
        "retry_delay": timedelta(seconds=1),
        "retry_exponential_backoff": True,
        "on_retry_callback": note_retry,
    },
):
    PythonOperator(task_id="flaky", python_callable=flaky)
