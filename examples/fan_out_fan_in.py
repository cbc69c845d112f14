"""Fan out over a list known only at run time, then fan back in.

`list_shards` decides how many shards there are; `process` is expanded into one task
instance per shard; `combine` receives all their results, in order.
"""

from __future__ import annotations

from orchestrator import DAG, TaskContext, task


@task
def list_shards(context: TaskContext) -> list[int]:
    return list(range(int(context.conf.get("shards", 4))))


@task
def process(shard: int, factor: int) -> dict[str, int]:
    return {"shard": shard, "value": shard * factor}


@task
def combine(parts: list[dict[str, int]]) -> dict[str, int]:
    return {"shards": len(parts), "total": sum(part["value"] for part in parts)}


with DAG("fan_out_fan_in", description="one task per shard, then combine"):
    combine(process.partial(factor=10).expand(shard=list_shards()))
