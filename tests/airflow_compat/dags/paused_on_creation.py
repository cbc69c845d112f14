"""is_paused_upon_creation=True: the DAG is paused when first seen, so its schedule starts nothing."""
from datetime import datetime

from airflow import DAG
from airflow.operators.python import PythonOperator

with DAG(
    "paused_on_creation",
    schedule="@hourly",
    start_date=datetime(2024, 1, 1),
    catchup=False,
    is_paused_upon_creation=True,
):
    PythonOperator(task_id="work", python_callable=lambda: "worked")
