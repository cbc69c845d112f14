"""Time sensors: wait an hour after the data interval, or until a moment; soft_fail skips."""
from datetime import timedelta

import pendulum

from airflow.providers.standard.sensors.date_time import DateTimeSensor
from airflow.providers.standard.sensors.time_delta import TimeDeltaSensor
from airflow.sdk import DAG, task

with DAG("time_sensors", schedule=None, start_date=pendulum.datetime(2024, 1, 1, tz="UTC")):
    hour_later = TimeDeltaSensor(task_id="hour_later", delta=timedelta(hours=1), deferrable=True)
    past_moment = DateTimeSensor(task_id="past_moment", target_time="2024-01-01T00:00:00+00:00")
    too_late = TimeDeltaSensor(
        task_id="too_late", delta=timedelta(hours=2), timeout=1800, soft_fail=True
    )

    @task(trigger_rule="none_failed")
    def report(**context):
        return str(context["ti"].task_id)

    [hour_later, past_moment, too_late] >> report()
