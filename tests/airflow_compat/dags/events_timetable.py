"""EventsTimetable: a run at each listed moment (a duplicate runs once), its data interval empty
at the event, as Airflow's docs show for irregular dates such as match days; restricted to the
events, a manual run covers the latest one."""
import pendulum

from airflow import DAG
from airflow.operators.python import PythonOperator
from airflow.timetables.events import EventsTimetable

MATCH_DAYS = [
    pendulum.datetime(2024, 3, 15, 20, tz="Europe/London"),
    pendulum.datetime(2024, 1, 6, 15, tz="Europe/London"),
    pendulum.datetime(2024, 2, 10, 12, 30, tz="Europe/London"),
    pendulum.datetime(2024, 1, 6, 15, tz="Europe/London"),
]


def report(ds, data_interval_start, data_interval_end):
    return {"ds": ds, "start": data_interval_start.isoformat(), "end": data_interval_end.isoformat()}


with DAG(
    "match_days",
    schedule=EventsTimetable(
        event_dates=MATCH_DAYS, description="Match days", restrict_to_events=True
    ),
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=True,
):
    PythonOperator(task_id="report", python_callable=report)
