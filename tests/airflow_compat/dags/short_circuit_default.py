"""ShortCircuitOperator with its default (ignore_downstream_trigger_rules=True): a false result
skips every task downstream, an all_done one too; a task a true path reaches still runs."""
from datetime import datetime

from airflow import DAG
from airflow.operators.python import PythonOperator, ShortCircuitOperator
from airflow.utils.trigger_rule import TriggerRule

with DAG("short_circuit_default", schedule=None, start_date=datetime(2024, 1, 1)):
    gate = ShortCircuitOperator(task_id="gate", python_callable=lambda: False)
    load = PythonOperator(task_id="load", python_callable=lambda: "loaded")
    report = PythonOperator(
        task_id="report", python_callable=lambda: "reported", trigger_rule=TriggerRule.ALL_DONE
    )
    audit = PythonOperator(
        task_id="audit", python_callable=lambda: "audited", trigger_rule=TriggerRule.ALL_DONE
    )
    gate >> load >> report
    [gate, load] >> audit
