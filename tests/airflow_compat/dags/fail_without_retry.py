from datetime import datetime, timedelta

from airflow.decorators import dag, task
from airflow.exceptions import AirflowFailException

default_args = {"retries": 3, "retry_delay": timedelta(seconds=0)}


@dag(schedule=None, start_date=datetime(2024, 1, 1), catchup=False, default_args=default_args)
def fail_without_retry():
    @task
    def validate():
        raise AirflowFailException("the input file has no header")

    @task(trigger_rule="all_failed")
    def alert():
        return "alerted"

    validate() >> alert()


fail_without_retry()
