"""TriggerDagRunOperator: a controller starts a target DAG with a templated conf, waits for it,
and reads the triggered run's id from XCom; a second controller sees the target fail."""
from datetime import datetime

from airflow import DAG
from airflow.decorators import task
from airflow.models.param import Param
from airflow.operators.python import PythonOperator
from airflow.operators.trigger_dagrun import TriggerDagRunOperator


def greet(**context):
    conf = context["dag_run"].conf
    if conf.get("fail"):
        raise ValueError("asked to fail")
    return f"{conf['message']} (run {context['run_id']})"


with DAG("trigger_target", schedule=None, start_date=datetime(2024, 1, 1), catchup=False):
    PythonOperator(task_id="greet", python_callable=greet)


with DAG(
    "trigger_controller",
    schedule=None,
    start_date=datetime(2024, 1, 1),
    params={"greeting": Param("hello", type="string")},
):
    trigger = TriggerDagRunOperator(
        task_id="trigger",
        trigger_dag_id="trigger_target",
        conf={"message": "{{ params.greeting }} from {{ dag.dag_id }}"},
        wait_for_completion=True,
        poke_interval=1,
        allowed_states=["success"],
        failed_states=["failed"],
    )

    @task
    def after(ti=None):
        return ti.xcom_pull(task_ids="trigger", key="trigger_run_id")

    trigger >> after()


with DAG("trigger_failing", schedule=None, start_date=datetime(2024, 1, 1)):
    TriggerDagRunOperator(
        task_id="trigger",
        trigger_dag_id="trigger_target",
        conf={"fail": True},
        wait_for_completion=True,
        poke_interval=1,
        reset_dag_run=False,
    )
