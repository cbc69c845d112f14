"""Setup and teardown as Airflow's docs write them, with the outcomes they document: a teardown as a context manager wraps the work made inside it; a failed setup fails the work (upstream_failed) and its teardown; failed work still gets its teardown; clearing the work runs its setup again, then the teardown; `group >> task` leaves the group's teardown out."""
import pendulum

from airflow.models import Variable
from airflow.operators.bash import BashOperator
from airflow.operators.empty import EmptyOperator
from airflow.sdk import DAG, TaskGroup, setup, task, teardown

with DAG(
    dag_id="setup_teardown_scopes",
    schedule=None,
    start_date=pendulum.datetime(2021, 1, 1, tz="UTC"),
    catchup=False,
) as dag:

    @setup
    def create_cluster(ti=None):
        if Variable.get("cluster", default_var="up") == "down":
            raise ValueError("no capacity for a cluster")
        return f"cluster-{ti.try_number}"

    @task
    def run_query(cluster):
        if Variable.get("query", default_var="ok") != "ok":
            raise ValueError(f"the query on {cluster} failed")
        return f"rows from {cluster}"

    @task
    def count_rows():
        return 3

    @task
    def report(rows, count):
        return f"{count} {rows}"

    @teardown
    def delete_cluster(cluster):
        return f"deleted {cluster}"

    cluster = create_cluster()
    with delete_cluster(cluster).as_teardown(setups=cluster):
        report(run_query(cluster), count_rows())

    start_warehouse = EmptyOperator(task_id="start_warehouse")
    stop_warehouse = EmptyOperator(task_id="stop_warehouse")
    with start_warehouse.as_setup() >> stop_warehouse.as_teardown(setups=start_warehouse):
        BashOperator(task_id="load", bash_command="echo loaded")

    with TaskGroup("cache") as cache:
        warm_cache = EmptyOperator(task_id="warm").as_setup()
        use_cache = BashOperator(task_id="use", bash_command="echo used")
        drop_cache = EmptyOperator(task_id="drop")
        warm_cache >> use_cache >> drop_cache.as_teardown(setups=warm_cache)
    cache >> BashOperator(task_id="publish", bash_command="echo published")
