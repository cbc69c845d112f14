"""as_setup() / as_teardown(setups=...) on operators and TaskFlow calls (Airflow's example_setup_teardown, and a TaskFlow pair): teardowns run after the work whatever it did; the run's state comes from the work, and from a teardown only with on_failure_fail_dagrun."""
import pendulum

from airflow.operators.bash import BashOperator
from airflow.sdk import DAG, TaskGroup, task

with DAG(
    dag_id="setup_teardown_methods",
    schedule=None,
    start_date=pendulum.datetime(2021, 1, 1, tz="UTC"),
    catchup=False,
    params={"fail": ""},
) as dag:
    root_setup = BashOperator(
        task_id="root_setup", bash_command="echo 'Hello from root_setup'"
    ).as_setup()
    root_normal = BashOperator(
        task_id="normal", bash_command="test '{{ params.fail }}' != work"
    )
    root_teardown = BashOperator(
        task_id="root_teardown", bash_command="test '{{ params.fail }}' != teardown"
    ).as_teardown(setups=root_setup)
    root_setup >> root_normal >> root_teardown
    with TaskGroup("section_1") as section_1:
        inner_setup = BashOperator(
            task_id="taskgroup_setup", bash_command="echo 'Hello from taskgroup_setup'"
        ).as_setup()
        inner_normal = BashOperator(task_id="normal", bash_command="echo 'I am just a normal task'")
        inner_teardown = BashOperator(
            task_id="taskgroup_teardown", bash_command="echo 'Hello from taskgroup_teardown'"
        ).as_teardown(setups=inner_setup)
        inner_setup >> inner_normal >> inner_teardown
    root_normal >> section_1

    @task
    def create_bucket():
        return "bucket-1"

    @task
    def grant_access():
        return "granted"

    @task
    def fill_bucket(bucket):
        return f"filled {bucket}"

    @task
    def delete_bucket(bucket, params=None):
        if params["fail"] == "strict_teardown":
            raise ValueError(f"{bucket} is still in use")
        return f"deleted {bucket}"

    bucket = create_bucket()
    access = grant_access()
    fill_bucket(bucket) >> delete_bucket(bucket).as_teardown(
        setups=[bucket, access], on_failure_fail_dagrun=True
    )
