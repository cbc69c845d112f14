"""@task.sensor: the function is the poke, returning a bool or PokeReturnValue(is_done,
xcom_value); poke_interval, timeout, mode and soft_fail as on any sensor."""
import os
from datetime import datetime

from airflow.decorators import dag, task
from airflow.sensors.base import PokeReturnValue


@dag(schedule=None, start_date=datetime(2024, 1, 1), params={"folder": ""})
def task_sensors():
    @task.sensor(poke_interval=0.01, timeout=60, mode="reschedule")
    def third_poke(folder: str) -> PokeReturnValue:
        with open(os.path.join(folder, "pokes"), "a") as pokes:
            pokes.write("poke\n")
        with open(os.path.join(folder, "pokes")) as pokes:
            count = len(pokes.readlines())
        return PokeReturnValue(is_done=count >= 3, xcom_value={"pokes": count})

    @task.sensor(poke_interval=0.01, timeout=60, mode="poke")
    def ready_now() -> bool:
        return True

    @task.sensor(poke_interval=30, timeout=0, soft_fail=True)
    def never() -> bool:
        return False

    @task
    def report(found: dict) -> str:
        return f"done after {found['pokes']} pokes"

    report(third_poke("{{ params.folder }}"))
    ready_now()
    never()


task_sensors()
