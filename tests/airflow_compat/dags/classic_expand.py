"""Dynamic task mapping on classic operators: expand and expand_kwargs."""
from datetime import datetime

from airflow import DAG
from airflow.operators.bash import BashOperator
from airflow.operators.python import PythonOperator


def add(x, y):
    return x + y


with DAG("classic_expand", schedule=None, start_date=datetime(2024, 1, 1)):
    BashOperator.partial(task_id="echo").expand(bash_command=["echo one", "echo two"])
    PythonOperator.partial(task_id="add", python_callable=add).expand_kwargs(
        [{"op_args": [1, 2]}, {"op_args": [3, 4]}, {"op_kwargs": {"x": 5, "y": 6}}]
    )
