"""Durable state: the `Store` interface, its records, and the SQLite store behind it.

```python
async with open_store(state_dir) as store:
    batch = WriteBatch()
    batch.create_run(run, task_instances)
    await store.commit(batch)
```
"""

from orchestrator.store.base import Store, StoreStatistics, TaskKey, WriteBatch
from orchestrator.store.records import (
    DagGrid,
    DagRecord,
    DagTaskInstance,
    ImportErrorRecord,
    RunRecord,
    TaskInstanceRecord,
    TokenRecord,
    TriggerRecord,
    TryRecord,
    WebhookRecord,
)
from orchestrator.store.sqlite import SqliteStore, open_store

__all__ = (
    "DagGrid",
    "DagRecord",
    "DagTaskInstance",
    "ImportErrorRecord",
    "RunRecord",
    "SqliteStore",
    "Store",
    "StoreStatistics",
    "TaskInstanceRecord",
    "TaskKey",
    "TokenRecord",
    "TriggerRecord",
    "TryRecord",
    "WebhookRecord",
    "WriteBatch",
    "open_store",
)
