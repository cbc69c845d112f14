"""ShortCircuitOperator(ignore_downstream_trigger_rules=False): only the direct downstream task is
skipped; a task further down with trigger_rule="all_done" still runs."""
from datetime import datetime

from airflow import DAG
from airflow.operators.python import PythonOperator, ShortCircuitOperator
from airflow.utils.trigger_rule import TriggerRule

with DAG("short_circuit_rules", schedule=None, start_date=datetime(2024, 1, 1)):
    gate = ShortCircuitOperator(
        task_id="gate",
        python_callable=lambda: False,
        ignore_downstream_trigger_rules=False,
    )
    load = PythonOperator(task_id="load", python_callable=lambda: "loaded")
    report = PythonOperator(
        task_id="report", python_callable=lambda: "reported", trigger_rule=TriggerRule.ALL_DONE
    )
    gate >> load >> report
