"""Trigger timetables (Airflow 3's `airflow.sdk`): a run at each tick, its data interval ending
there. Each catches up over January 2024 but the last two, which show `run_immediately`."""
from datetime import timedelta

import pendulum

from airflow.sdk import (
    DAG,
    CronTriggerTimetable,
    DeltaTriggerTimetable,
    MultipleCronTriggerTimetable,
    task,
)

START = pendulum.datetime(2024, 1, 1, tz="UTC")
END = pendulum.datetime(2024, 1, 3, 12, tz="UTC")


@task
def report(**context):
    return {
        "ds": context["ds"],
        "logical_date": context["logical_date"].isoformat(),
        "start": context["data_interval_start"].isoformat(),
        "end": context["data_interval_end"].isoformat(),
    }


def reporting(dag_id, schedule, *, end_date=END, catchup=True):
    with DAG(dag_id, schedule=schedule, start_date=START, end_date=end_date, catchup=catchup):
        report()


# 06:00 each day: an empty data interval at 06:00, whose date is the run's `ds`.
reporting("cron_trigger", CronTriggerTimetable("0 6 * * *", timezone="UTC"))
# The same ticks, each run covering the six hours before its tick.
reporting(
    "cron_trigger_interval",
    CronTriggerTimetable("0 6 * * *", timezone="UTC", interval=timedelta(hours=6)),
)
# Every 12 hours from the start date.
reporting(
    "delta_trigger", DeltaTriggerTimetable(timedelta(hours=12)), end_date=START.add(days=1)
)
# 06:00 and 18:30, one run for each.
reporting(
    "multiple_cron_trigger",
    MultipleCronTriggerTimetable("0 6 * * *", "30 18 * * *", timezone="UTC"),
    end_date=START.add(hours=23),
)
# catchup=False: the tick that passed before the DAG was watched is skipped (Airflow's default)
# or run at once (run_immediately=True).
reporting(
    "cron_trigger_waits",
    CronTriggerTimetable("0 6 * * *", timezone="UTC"),
    end_date=START.add(days=1),
    catchup=False,
)
reporting(
    "cron_trigger_immediately",
    CronTriggerTimetable("0 6 * * *", timezone="UTC", run_immediately=True),
    end_date=START.add(days=1),
    catchup=False,
)
