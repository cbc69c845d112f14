"""depends_on_past from default_args: each task runs once the same task of the previous run succeeded or was skipped; the first run runs, a failure holds the next run until it is cleared and fixed."""
from datetime import datetime

from airflow import DAG
from airflow.models import Variable
from airflow.operators.python import PythonOperator


def extract():
    return 42


def load(ti):
    if Variable.get("warehouse", default_var="up") != "up":
        raise ValueError("the warehouse is down")
    return ti.xcom_pull(task_ids="extract")


with DAG(
    "depends_on_past",
    schedule=None,
    start_date=datetime(2024, 1, 1),
    default_args={"depends_on_past": True},
):
    PythonOperator(task_id="extract", python_callable=extract) >> PythonOperator(
        task_id="load", python_callable=load
    )
