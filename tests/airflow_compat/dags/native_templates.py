"""render_template_as_native_obj, user_defined_macros, and a custom operator's template_fields."""
from datetime import datetime

from airflow import DAG
from airflow.models.baseoperator import BaseOperator
from airflow.operators.python import PythonOperator


class GreetOperator(BaseOperator):
    template_fields = ("name", "numbers")

    def __init__(self, name, numbers, **kwargs):
        super().__init__(**kwargs)
        self.name = name
        self.numbers = numbers

    def execute(self, context):
        return {"greeting": f"hello {self.name}", "total": sum(self.numbers)}


with DAG(
    "native_templates",
    schedule=None,
    start_date=datetime(2024, 1, 1),
    render_template_as_native_obj=True,
    user_defined_macros={"team": "data", "double": lambda x: x * 2},
):
    native = PythonOperator(
        task_id="native",
        python_callable=lambda values: {"type": type(values).__name__, "values": values},
        op_kwargs={"values": "{{ [1, 2, double(3)] }}"},
    )
    greet = GreetOperator(task_id="greet", name="{{ team }}", numbers="{{ [1, 2, 3] }}")
    native >> greet
