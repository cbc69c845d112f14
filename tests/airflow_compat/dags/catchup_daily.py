"""catchup=True on @daily from a past start_date: one run per missed interval, oldest first."""
import pendulum

from airflow import DAG
from airflow.operators.python import PythonOperator


def report(ds, data_interval_start, data_interval_end):
    return {"ds": ds, "start": data_interval_start.isoformat(), "end": data_interval_end.isoformat()}


with DAG(
    "catchup_daily",
    schedule="@daily",
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    end_date=pendulum.datetime(2024, 1, 3, 12, tz="UTC"),
    catchup=True,
):
    PythonOperator(task_id="report", python_callable=report)
