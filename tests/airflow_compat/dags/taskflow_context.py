"""TaskFlow with **context and get_current_context, and ti.xcom_pull of several task ids."""
from datetime import datetime

from airflow.decorators import dag, task
from airflow.operators.python import get_current_context


@dag(schedule=None, start_date=datetime(2024, 1, 1), catchup=False)
def taskflow_context():
    @task
    def first():
        return 1

    @task
    def second():
        return 2

    @task
    def with_kwargs(**context):
        return [context["dag"].dag_id, context["ti"].task_id, context["params"].get("x", "none")]

    @task
    def with_current():
        context = get_current_context()
        return context["ti"].xcom_pull(task_ids=["first", "second"])

    [first(), second()] >> with_current()
    with_kwargs()


taskflow_context()
