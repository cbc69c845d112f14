"""Variables and connections from AIRFLOW_VAR_* and AIRFLOW_CONN_*, in code and in templates."""
from datetime import datetime

from airflow import DAG
from airflow.hooks.base import BaseHook
from airflow.models import Variable
from airflow.operators.bash import BashOperator
from airflow.operators.python import PythonOperator


def describe():
    conn = BaseHook.get_connection("warehouse")
    limits = Variable.get("limits", deserialize_json=True)
    return {
        "region": Variable.get("region"),
        "missing": Variable.get("not_set", default_var="fallback"),
        "max_rows": limits["max_rows"],
        "host": conn.host,
        "port": conn.port,
        "login": conn.login,
        "schema": conn.schema,
    }


with DAG("variables_connections", schedule=None, start_date=datetime(2024, 1, 1)):
    PythonOperator(task_id="describe", python_callable=describe)
    BashOperator(task_id="templated", bash_command="echo {{ var.value.region }}")
