"""LatestOnlyOperator in scheduled runs: only the latest interval runs what is downstream."""
from airflow import DAG
from airflow.operators.empty import EmptyOperator
from airflow.operators.latest_only import LatestOnlyOperator
from airflow.operators.python import PythonOperator
from airflow.utils.dates import days_ago

with DAG("latest_only_scheduled", schedule="@daily", start_date=days_ago(3), catchup=True):
    latest = LatestOnlyOperator(task_id="latest_only")
    publish = PythonOperator(task_id="publish", python_callable=lambda ds: f"published {ds}")
    latest >> publish
    EmptyOperator(task_id="archive")
