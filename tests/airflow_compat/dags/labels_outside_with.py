"""A DAG built without a with block (dag=dag), with edge labels, chain and default_args."""
from datetime import datetime, timedelta

from airflow import DAG
from airflow.models.baseoperator import chain
from airflow.operators.empty import EmptyOperator
from airflow.operators.python import PythonOperator
from airflow.utils.edgemodifier import Label

dag = DAG(
    "labels_outside_with",
    schedule=None,
    start_date=datetime(2024, 1, 1),
    default_args={"retries": 2, "retry_delay": timedelta(seconds=1), "owner": "data"},
)

start = EmptyOperator(task_id="start", dag=dag)
check = PythonOperator(task_id="check", python_callable=lambda: "valid", dag=dag)
load = PythonOperator(task_id="load", python_callable=lambda: "loaded", dag=dag)
end = EmptyOperator(task_id="end", dag=dag)

start >> Label("validate first") >> check
chain(check, load, end)
