"""ExternalTaskSensor: a report waits for another DAG's task to succeed."""
from datetime import datetime

from airflow import DAG
from airflow.operators.python import PythonOperator
from airflow.sensors.external_task import ExternalTaskSensor

with DAG("publisher", schedule=None, start_date=datetime(2024, 1, 1)):
    PythonOperator(task_id="publish", python_callable=lambda: "published")

with DAG("reader", schedule=None, start_date=datetime(2024, 1, 1)):
    waited = ExternalTaskSensor(
        task_id="wait_for_publish",
        external_dag_id="publisher",
        external_task_id="publish",
        deferrable=True,
    )
    waited >> PythonOperator(task_id="read", python_callable=lambda: "read")
