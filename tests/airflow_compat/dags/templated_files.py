"""Templates read from .sql and .sh files found through template_searchpath."""
import os
from datetime import datetime

from airflow import DAG
from airflow.models.baseoperator import BaseOperator
from airflow.operators.bash import BashOperator


class SqlReport(BaseOperator):
    template_fields = ("sql",)
    template_ext = (".sql",)

    def __init__(self, sql, **kwargs):
        super().__init__(**kwargs)
        self.sql = sql

    def execute(self, context):
        return self.sql.strip()


with DAG(
    "templated_files",
    schedule=None,
    start_date=datetime(2024, 1, 1),
    template_searchpath=[os.path.join(os.path.dirname(__file__), "templates")],
    params={"region": "emea"},
):
    report = SqlReport(task_id="report", sql="report.sql")
    greet = BashOperator(task_id="greet", bash_command="greet.sh", env={"WHO": "{{ task.task_id }}"})
    report >> greet
