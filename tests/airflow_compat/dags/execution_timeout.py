"""execution_timeout: a try that runs longer fails (no retries left), downstream is
upstream_failed, and a one_failed alert runs."""
import time
from datetime import datetime, timedelta

from airflow import DAG
from airflow.operators.python import PythonOperator

with DAG("execution_timeout", schedule=None, start_date=datetime(2024, 1, 1)):
    slow = PythonOperator(
        task_id="slow",
        python_callable=lambda: time.sleep(120),
        execution_timeout=timedelta(seconds=1),
        retries=0,
    )
    load = PythonOperator(task_id="load", python_callable=lambda: "loaded")
    alert = PythonOperator(
        task_id="alert", python_callable=lambda: "paged", trigger_rule="one_failed"
    )
    slow >> [load, alert]
