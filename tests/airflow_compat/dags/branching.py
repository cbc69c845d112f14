"""Airflow 2 style: branch, short-circuit, a task group, labels and trigger rules."""
from datetime import datetime

from airflow import DAG
from airflow.operators.empty import EmptyOperator
from airflow.operators.python import BranchPythonOperator, PythonOperator, ShortCircuitOperator
from airflow.utils.edgemodifier import Label
from airflow.utils.task_group import TaskGroup
from airflow.utils.trigger_rule import TriggerRule


def choose(**context):
    return "small" if context["params"]["size"] < 10 else "large"


with DAG(
    dag_id="branching",
    start_date=datetime(2024, 1, 1),
    schedule=None,
    params={"size": 3},
    default_args={"retries": 0},
) as dag:
    start = EmptyOperator(task_id="start")
    branch = BranchPythonOperator(task_id="branch", python_callable=choose)
    small = PythonOperator(task_id="small", python_callable=lambda: "small path")
    large = PythonOperator(task_id="large", python_callable=lambda: "large path")
    join = EmptyOperator(task_id="join", trigger_rule=TriggerRule.NONE_FAILED_MIN_ONE_SUCCESS)
    with TaskGroup("checks") as checks:
        first = PythonOperator(task_id="first", python_callable=lambda: 1)
        second = PythonOperator(task_id="second", python_callable=lambda: 2)
        first >> second
    gate = ShortCircuitOperator(task_id="gate", python_callable=lambda: False)
    after_gate = EmptyOperator(task_id="after_gate")
    cleanup = EmptyOperator(task_id="cleanup")
    cleanup.trigger_rule = "all_done"

    start >> branch >> Label("small orders") >> small >> join
    branch >> Label("large orders") >> large >> join
    join >> checks >> gate >> after_gate >> cleanup
