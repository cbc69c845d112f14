"""Data-interval timetables, in Airflow 2's spelling (`timetable=`): a run when each interval
ends, its `ds` the interval's start."""
from datetime import timedelta

import pendulum

from airflow import DAG
from airflow.operators.python import PythonOperator
from airflow.timetables.interval import CronDataIntervalTimetable, DeltaDataIntervalTimetable

START = pendulum.datetime(2024, 1, 1, tz="UTC")


def report(ds, logical_date, data_interval_start, data_interval_end):
    return {
        "ds": ds,
        "logical_date": logical_date.isoformat(),
        "start": data_interval_start.isoformat(),
        "end": data_interval_end.isoformat(),
    }


with DAG(
    "cron_data_interval",
    timetable=CronDataIntervalTimetable("0 0 * * *", timezone="UTC"),
    start_date=START,
    end_date=START.add(days=1),
    catchup=True,
):
    PythonOperator(task_id="report", python_callable=report)

with DAG(
    "delta_data_interval",
    timetable=DeltaDataIntervalTimetable(timedelta(hours=12)),
    start_date=START,
    end_date=START.add(hours=12),
    catchup=True,
):
    PythonOperator(task_id="report", python_callable=report)
