"""dagrun_timeout: a run still running an hour after it started fails; its deferred sensor's
trigger is dropped and the tasks that never ran are not run."""
from datetime import datetime, timedelta

from airflow import DAG
from airflow.operators.python import PythonOperator
from airflow.providers.standard.sensors.time_delta import TimeDeltaSensor

with DAG(
    "run_timeout",
    schedule=None,
    start_date=datetime(2024, 1, 1),
    dagrun_timeout=timedelta(hours=1),
):
    quick = PythonOperator(task_id="quick", python_callable=lambda: "done")
    slow = TimeDeltaSensor(task_id="slow", delta=timedelta(hours=2), deferrable=True)
    after = PythonOperator(task_id="after", python_callable=lambda: "never")
    quick >> slow >> after
