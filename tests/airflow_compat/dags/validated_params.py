"""Params with JSON schemas: a trigger whose conf breaks one is refused, naming the param."""
import pendulum

from airflow.sdk import DAG, Param, task

with DAG(
    "validated_params",
    schedule=None,
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    params={
        "batch_size": Param(100, type="integer", minimum=1, maximum=1000),
        "mode": Param("full", enum=["full", "incremental"]),
        "note": "anything goes",
    },
):

    @task
    def plan(params=None):
        return {"batch_size": params["batch_size"], "mode": params["mode"], "note": params["note"]}

    plan()
