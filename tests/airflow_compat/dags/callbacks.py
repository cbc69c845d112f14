"""Callbacks at DAG and task level: task on_failure, task on_success, DAG on_failure."""
from datetime import datetime
from pathlib import Path

from airflow import DAG
from airflow.models import Variable
from airflow.operators.python import PythonOperator


def record(what):
    def callback(context):
        folder = Path(Variable.get("callback_folder"))
        name = context["task_instance"].task_id if "task_instance" in context else "dag"
        (folder / f"{what}-{name}").write_text(context["run_id"])

    return callback


def boom():
    raise RuntimeError("boom")


with DAG(
    "callbacks",
    schedule=None,
    start_date=datetime(2024, 1, 1),
    on_failure_callback=record("dag_failed"),
    on_success_callback=record("dag_succeeded"),
):
    ok = PythonOperator(
        task_id="ok", python_callable=lambda: 1, on_success_callback=record("succeeded")
    )
    bad = PythonOperator(
        task_id="bad", python_callable=boom, retries=0, on_failure_callback=record("failed")
    )
    ok >> bad
