"""A PythonSensor in reschedule mode gives its slot back between pokes: with one slot, the task
that makes its condition true runs while it waits."""
import os
from datetime import datetime

from airflow import DAG
from airflow.operators.python import PythonOperator
from airflow.sensors.python import PythonSensor


def marker_is_there(folder):
    with open(os.path.join(folder, "pokes"), "a") as pokes:
        pokes.write("poke\n")
    return os.path.exists(os.path.join(folder, "marker"))


def write_marker(folder):
    open(os.path.join(folder, "marker"), "w").close()
    return "written"


with DAG("reschedule_sensor", schedule=None, start_date=datetime(2024, 1, 1), params={"folder": ""}):
    wait = PythonSensor(
        task_id="wait",
        python_callable=marker_is_there,
        op_args=["{{ params.folder }}"],
        mode="reschedule",
        poke_interval=0.05,
        timeout=60,
        priority_weight=10,
    )
    write = PythonOperator(
        task_id="write", python_callable=write_marker, op_args=["{{ params.folder }}"]
    )
