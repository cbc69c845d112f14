"""PythonVirtualenvOperator, ExternalPythonOperator and their TaskFlow forms: the callable runs
from its source in another interpreter; arguments go in and the result comes back as JSON."""
import sys
from datetime import datetime

from airflow.decorators import dag, task
from airflow.operators.python import ExternalPythonOperator, PythonVirtualenvOperator


def in_a_venv(numbers, scale=1):
    import sys

    return {"total": sum(numbers) * scale, "venv": sys.prefix != sys.base_prefix}


def where_am_i(label, ds=None):
    import sys

    return {"label": label, "executable": sys.executable, "has_ds": ds is not None}


@dag(schedule=None, start_date=datetime(2024, 1, 1))
def other_interpreters():
    venv = PythonVirtualenvOperator(
        task_id="venv",
        python_callable=in_a_venv,
        op_args=[[1, 2, 3]],
        op_kwargs={"scale": 2},
        requirements=[],
        system_site_packages=True,
    )
    external = ExternalPythonOperator(
        task_id="external",
        python=sys.executable,
        python_callable=where_am_i,
        op_args=["{{ run_id }}"],
    )

    @task.virtualenv(system_site_packages=False)
    def decorated_venv(word: str) -> str:
        import json

        return json.dumps({"word": word.upper()})

    @task.external_python(python=sys.executable)
    def decorated_external(values: list) -> int:
        return max(values)

    @task
    def combine(total, shouted, biggest):
        return [total, shouted, biggest]

    venv >> external
    combine(venv.output, decorated_venv("hello"), decorated_external([4, 9, 2]))


other_interpreters()
