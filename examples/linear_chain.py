"""A linear chain: extract -> transform -> load, with a shell step at the end.

`orchestrator run linear_chain --dags-folder examples --conf '{"rows": 5}'`
"""

from __future__ import annotations

from orchestrator import DAG, Shell, TaskContext, task


@task
def extract(context: TaskContext) -> list[dict[str, int]]:
    rows = int(context.conf.get("rows", 3))
    return [{"id": i, "value": i * i} for i in range(rows)]


@task(retries=2, retry_delay=1, retry_exponential_backoff=True)
def transform(rows: list[dict[str, int]]) -> list[dict[str, int]]:
    return [{**row, "value": row["value"] + 1} for row in rows]


@task
def load(rows: list[dict[str, int]]) -> dict[str, int]:
    total = sum(row["value"] for row in rows)
    print(f"loaded {len(rows)} rows, total {total}")
    return {"rows": len(rows), "total": total}


with DAG("linear_chain", description="extract -> transform -> load -> report"):
    loaded = load(transform(extract()))
    loaded >> Shell('echo "report for run $ORCHESTRATOR_RUN_ID"', task_id="report")
