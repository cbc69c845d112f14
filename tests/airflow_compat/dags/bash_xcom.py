"""Bash and Jinja: templated commands, XCom by key, the last line as the return value."""
from datetime import datetime, timedelta

from airflow.models.dag import DAG
from airflow.providers.standard.operators.bash import BashOperator
from airflow.providers.standard.operators.python import PythonOperator


def push(ti):
    ti.xcom_push(key="color", value="blue")
    return "pushed"


def pull(ti, templates_dict):
    return {
        "color": ti.xcom_pull(task_ids="push", key="color"),
        "returned": ti.xcom_pull(task_ids="push"),
        "echo": ti.xcom_pull(task_ids="echo"),
        "rendered": templates_dict["when"],
    }


dag = DAG(
    "bash_xcom",
    schedule="@daily",
    start_date=datetime(2024, 1, 1),
    catchup=False,
    user_defined_macros={"greeting": "hello"},
    default_args={"retries": 1, "retry_delay": timedelta(seconds=1)},
)
pusher = PythonOperator(task_id="push", python_callable=push, dag=dag)
echo = BashOperator(
    task_id="echo",
    bash_command="echo first; echo '{{ greeting }} {{ params.who }} {{ macros.ds_add(\"2024-01-10\", -1) }}'",
    params={"who": "world"},
    dag=dag,
)
skipped = BashOperator(task_id="skipped", bash_command="exit 99", dag=dag)
puller = PythonOperator(
    task_id="pull",
    python_callable=pull,
    templates_dict={"when": "{{ ds_nodash | length }}"},
    dag=dag,
)
pusher >> echo >> puller
echo >> skipped
