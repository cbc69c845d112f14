"""Airflow 3's task SDK: `from airflow.sdk import ...`; the producer's outlet starts the consumer."""
import pendulum

from airflow.sdk import DAG, Asset, Param, get_current_context, task

scores = Asset("file:///data/scores.json")
START = pendulum.datetime(2024, 1, 1, tz="UTC")

with DAG(
    "sdk_producer",
    schedule=None,
    start_date=START,
    params={"threshold": Param(5, type="integer", minimum=0)},
):

    @task(outlets=[scores])
    def score():
        context = get_current_context()
        return {"threshold": context["params"]["threshold"], "task": context["ti"].task_id}

    score()

with DAG("sdk_consumer", schedule=[scores], start_date=START):

    @task
    def read():
        context = get_current_context()
        return [event["asset"] for event in context["dag_run"].conf["events"]]

    read()
