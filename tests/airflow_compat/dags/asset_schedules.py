"""Asset-aware scheduling: a list and `&` wait for every asset, `|` runs on each update."""
import pendulum

from airflow.sdk import DAG, Asset, task

orders = Asset("s3://lake/orders")
customers = Asset("s3://lake/customers")
START = pendulum.datetime(2024, 1, 1, tz="UTC")

with DAG("produce_orders", schedule=None, start_date=START):

    @task(outlets=[orders])
    def write_orders():
        return "orders"

    write_orders()

with DAG("produce_customers", schedule=None, start_date=START):

    @task(outlets=[customers])
    def write_customers():
        return "customers"

    write_customers()


def consumer(dag_id, schedule):
    with DAG(dag_id, schedule=schedule, start_date=START) as dag:

        @task
        def report(**context):
            return context["dag_run"].run_type

        report()
    return dag


consumer("on_list", [orders, customers])
consumer("on_and", orders & customers)
consumer("on_or", orders | customers)
