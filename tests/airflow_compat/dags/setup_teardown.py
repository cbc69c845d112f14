"""Setup and teardown: the teardown runs although the work failed; the run fails with the work."""
import pendulum

from airflow.sdk import dag, setup, task, teardown


@dag(schedule=None, start_date=pendulum.datetime(2024, 1, 1, tz="UTC"))
def setup_teardown():
    @setup
    def create_cluster():
        return "cluster-1"

    @task
    def work(cluster):
        raise ValueError(f"the job on {cluster} failed")

    @teardown
    def delete_cluster(cluster):
        return f"deleted {cluster}"

    cluster = create_cluster()
    work(cluster) >> delete_cluster(cluster)


setup_teardown()
