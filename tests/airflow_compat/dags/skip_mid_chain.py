"""AirflowSkipException in the middle of a chain: the task is skipped, and so is everything after
it under all_success; none_failed still runs."""
from datetime import datetime

from airflow import DAG
from airflow.exceptions import AirflowSkipException
from airflow.models.baseoperator import chain
from airflow.operators.python import PythonOperator


def check():
    raise AirflowSkipException("nothing new today")


with DAG("skip_mid_chain", schedule=None, start_date=datetime(2024, 1, 1)):
    extract = PythonOperator(task_id="extract", python_callable=lambda: 3)
    skip = PythonOperator(task_id="check", python_callable=check)
    transform = PythonOperator(task_id="transform", python_callable=lambda: 6)
    load = PythonOperator(task_id="load", python_callable=lambda: "loaded")
    summary = PythonOperator(
        task_id="summary", python_callable=lambda: "summarised", trigger_rule="none_failed"
    )
    chain(extract, skip, transform, load, summary)
