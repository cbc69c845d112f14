"""AssetOrTimeSchedule: runs on a timetable and on each update of an asset too; a run an asset
update started reads the update in `triggering_asset_events` (Airflow 2:
`triggering_dataset_events`), from Python and from a template."""
import pendulum

from airflow.sdk import DAG, Asset, AssetOrTimeSchedule, CronTriggerTimetable, task
from airflow.operators.bash import BashOperator
from airflow.operators.empty import EmptyOperator

weather = Asset("s3://lake/weather")
START = pendulum.datetime(2024, 1, 1, tz="UTC")

with DAG("weather_producer", schedule=None, start_date=START):
    EmptyOperator(task_id="fetch_weather", outlets=[weather])

with DAG(
    "asset_or_time",
    schedule=AssetOrTimeSchedule(
        timetable=CronTriggerTimetable("0 6 * * *", timezone="UTC"), assets=[weather]
    ),
    start_date=START,
    end_date=START.add(days=1, hours=12),
    catchup=True,
):

    @task
    def summarize(**context):
        events = context["triggering_asset_events"]
        return {
            "run_type": context["dag_run"].run_type,
            "ds": context["ds"],
            "events": {
                asset.uri: [
                    {
                        "uri": event.uri,
                        "source_dag_id": event.source_dag_id,
                        "source_task_id": event.source_task_id,
                        "source_run_id": event.source_run_id,
                        "extra": event.extra,
                        "has_timestamp": event.timestamp is not None,
                    }
                    for event in found
                ]
                for asset, found in events.items()
            },
        }

    summarize() >> BashOperator(
        task_id="templated",
        bash_command=(
            "echo '{% for asset, events in triggering_asset_events.items() %}"
            "{{ asset.uri }} from {{ events[0].source_dag_id }}.{{ events[0].source_task_id }}"
            "{% endfor %}'"
        ),
    )

with DAG("dataset_consumer", schedule=[weather], start_date=START):

    @task
    def count(triggering_dataset_events=None):
        return {uri: len(found) for uri, found in triggering_dataset_events.items()}

    count()
