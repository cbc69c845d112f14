"""A BranchPythonOperator that returns a task group's id: the group's tasks run, the other's skip."""
from datetime import datetime

from airflow import DAG
from airflow.operators.empty import EmptyOperator
from airflow.operators.python import BranchPythonOperator, PythonOperator
from airflow.utils.task_group import TaskGroup

with DAG("branch_to_group", schedule=None, start_date=datetime(2024, 1, 1), params={"rows": 5000}):
    pick = BranchPythonOperator(
        task_id="pick",
        python_callable=lambda params: "heavy" if params["rows"] > 1000 else "light",
    )
    with TaskGroup("heavy") as heavy:
        split = PythonOperator(task_id="split", python_callable=lambda: [1, 2])
        merge = PythonOperator(task_id="merge", python_callable=lambda: "merged")
        split >> merge
    with TaskGroup("light") as light:
        PythonOperator(task_id="copy", python_callable=lambda: "copied")
    done = EmptyOperator(task_id="done", trigger_rule="none_failed_min_one_success")
    pick >> [heavy, light] >> done
