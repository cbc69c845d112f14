"""Two ready tasks in a pool of one slot: the higher priority_weight runs first."""
from datetime import datetime

from airflow import DAG
from airflow.operators.empty import EmptyOperator
from airflow.operators.python import PythonOperator

with DAG("pool_priority", schedule=None, start_date=datetime(2024, 1, 1), max_active_tasks=4):
    start = EmptyOperator(task_id="start")
    low = PythonOperator(
        task_id="low", python_callable=lambda: "low", pool="single", priority_weight=1
    )
    high = PythonOperator(
        task_id="high", python_callable=lambda: "high", pool="single", priority_weight=10
    )
    start >> [low, high]
