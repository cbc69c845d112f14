"""orchestrator: event-driven pipelines in which waiting tasks hold no worker slot.

```python
from orchestrator import DAG, task

@task
def extract() -> list[int]:
    return [1, 2, 3]

@task
def total(values: list[int]) -> int:
    return sum(values)

with DAG("sums"):
    total(extract())
```

Names are imported on first use, so `orchestrator --help` and worker processes start fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from orchestrator.lazy import lazy_exports

__version__ = "0.1.0"

__all__ = (
    "DAG",
    "Asset",
    "BaseOperator",
    "DagFinished",
    "Defer",
    "Engine",
    "Output",
    "RunState",
    "Shell",
    "Skip",
    "TaskContext",
    "TaskState",
    "TriggerRule",
    "chain",
    "dag",
    "defer",
    "get_current_context",
    "task",
)

_WHERE = {
    "DAG": "orchestrator.dags",
    "Asset": "orchestrator.assets",
    "DagFinished": "orchestrator.runstarts",
    "dag": "orchestrator.dags",
    "BaseOperator": "orchestrator.operators",
    "Shell": "orchestrator.operators",
    "Engine": "orchestrator.engine",
    "Defer": "orchestrator.deferral",
    "defer": "orchestrator.deferral",
    "Output": "orchestrator.tasks",
    "Skip": "orchestrator.tasks",
    "chain": "orchestrator.tasks",
    "RunState": "orchestrator.state",
    "TaskState": "orchestrator.state",
    "TaskContext": "orchestrator.context",
    "get_current_context": "orchestrator.context",
    "TriggerRule": "orchestrator.trigger_rules",
    "task": "orchestrator.taskflow",
}

if TYPE_CHECKING:
    from orchestrator.assets import Asset
    from orchestrator.context import TaskContext, get_current_context
    from orchestrator.dags import DAG, dag
    from orchestrator.deferral import Defer, defer
    from orchestrator.engine import Engine
    from orchestrator.operators import BaseOperator, Shell
    from orchestrator.runstarts import DagFinished
    from orchestrator.state import RunState, TaskState
    from orchestrator.taskflow import task
    from orchestrator.tasks import Output, Skip, chain
    from orchestrator.trigger_rules import TriggerRule


__getattr__, __dir__ = lazy_exports("orchestrator", globals(), _WHERE, ("__version__",))
