"""Templated fields whose rendered values the UI and CLI show (secrets masked), and doc_md on
the DAG and its tasks, with markup that must come out as text."""
from datetime import datetime

from airflow import DAG
from airflow.operators.bash import BashOperator
from airflow.operators.python import PythonOperator


def greet(name, token, **context):
    return f"hello {name}"


with DAG(
    "rendered_and_docs",
    schedule=None,
    start_date=datetime(2024, 1, 1),
    params={"who": "world"},
    doc_md="# Orders\nLoads <script>alert('dag')</script> the orders.",
):
    say = BashOperator(
        task_id="say",
        bash_command="echo {{ params.who }} {{ var.value.api_token }}",
        env={"API_TOKEN": "{{ var.value.api_token }}", "WHO": "{{ params.who }}"},
        doc_md="Says <b>hello</b> <script>alert('task')</script>",
    )
    call = PythonOperator(
        task_id="call",
        python_callable=greet,
        op_args=["{{ params.who }}", "{{ var.value.db_password }}"],
        op_kwargs={"plain": "{{ var.value.region }}"},
    )
    say >> call
