"""Airflow 3 TaskFlow: values flow between tasks, mapped tasks, context by name and current."""
import pendulum

from airflow.sdk import dag, get_current_context, task


@dag(schedule=None, start_date=pendulum.datetime(2024, 1, 1, tz="UTC"), catchup=False, tags=["etl"])
def taskflow_etl(multiplier: int = 2):
    @task
    def extract() -> dict:
        return {"a": 1, "b": 2, "c": 3}

    @task(multiple_outputs=True)
    def transform(order: dict) -> dict:
        return {"total": sum(order.values()), "count": len(order)}

    @task
    def double(value: int, factor: int) -> int:
        return value * factor

    @task
    def load(total: int, count: int, doubled: list, ti=None, ds=None, **context) -> dict:
        current = get_current_context()
        assert current["ti"].task_id == "load"
        return {
            "total": total,
            "count": count,
            "doubled": list(doubled),
            "task": ti.task_id,
            "has_ds": ds == context["logical_date"].strftime("%Y-%m-%d"),
            "multiplier": context["params"]["multiplier"],
        }

    summary = transform(extract())
    doubled = double.partial(factor=multiplier).expand(value=[1, 2, 3])
    load(summary["total"], summary["count"], doubled)


taskflow_etl()
