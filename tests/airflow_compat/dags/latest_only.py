"""LatestOnlyOperator in a manual run: the downstream tasks run (Airflow skips nothing then)."""
from datetime import datetime

from airflow import DAG
from airflow.operators.empty import EmptyOperator
from airflow.operators.latest_only import LatestOnlyOperator
from airflow.operators.python import PythonOperator

with DAG("latest_only", schedule="@daily", start_date=datetime(2024, 1, 1), catchup=False):
    latest = LatestOnlyOperator(task_id="latest_only")
    latest >> PythonOperator(task_id="notify", python_callable=lambda: "sent")
    EmptyOperator(task_id="always")
