"""Arguments accepted and ignored (each reported once): owner, max_active_tis_per_dag; max_active_tasks=1 is kept: the two tasks never run at once."""
import time
from datetime import datetime

from airflow import DAG
from airflow.operators.python import PythonOperator


def stamp():
    began = time.time()
    time.sleep(0.05)
    return [began, time.time()]


with DAG(
    "ignored_arguments",
    schedule=None,
    start_date=datetime(2024, 1, 1),
    max_active_tasks=1,
    default_args={"owner": "data-team"},
):
    PythonOperator(task_id="first", python_callable=stamp, max_active_tis_per_dag=1)
    PythonOperator(task_id="second", python_callable=stamp)
