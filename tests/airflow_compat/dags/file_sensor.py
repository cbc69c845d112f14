"""A FileSensor waits for a file whose path is templated, then the next task runs."""
from datetime import datetime

from airflow import DAG
from airflow.operators.python import PythonOperator
from airflow.sensors.filesystem import FileSensor

with DAG("file_sensor", schedule=None, start_date=datetime(2024, 1, 1), params={"inbox": "/tmp"}):
    landed = FileSensor(
        task_id="landed",
        filepath="{{ params.inbox }}/orders.csv",
        poke_interval=30,
        timeout=3600,
        mode="reschedule",
    )
    process = PythonOperator(
        task_id="process",
        python_callable=lambda inbox: open(f"{inbox}/orders.csv").read().strip(),
        op_kwargs={"inbox": "{{ params.inbox }}"},
    )
    landed >> process
