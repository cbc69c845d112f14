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
    "Fail",
    "Output",
    "RunState",
    "Shell",
    "Skip",
    "TaskContext",
    "TaskState",
    "TriggerRule",
    "all_of",
    "any_of",
    "chain",
    "dag",
    "defer",
    "get_current_context",
    "task",
    "trigger_run",
)

_WHERE = {
    "DAG": "orchestrator.authoring.dag",
    "Asset": "orchestrator.authoring.assets",
    "all_of": "orchestrator.authoring.assets",
    "any_of": "orchestrator.authoring.assets",
    "DagFinished": "orchestrator.authoring.run_sources",
    "dag": "orchestrator.authoring.dag",
    "BaseOperator": "orchestrator.authoring.operators",
    "Shell": "orchestrator.authoring.operators",
    "Engine": "orchestrator.scheduling.engine",
    "Defer": "orchestrator.authoring.defer",
    "defer": "orchestrator.authoring.defer",
    "Output": "orchestrator.authoring.references",
    "Skip": "orchestrator.authoring.tasks",
    "Fail": "orchestrator.authoring.tasks",
    "chain": "orchestrator.authoring.tasks",
    "RunState": "orchestrator.state",
    "TaskState": "orchestrator.state",
    "TaskContext": "orchestrator.authoring.context",
    "get_current_context": "orchestrator.authoring.context",
    "TriggerRule": "orchestrator.authoring.trigger_rules",
    "task": "orchestrator.authoring.taskflow",
    "trigger_run": "orchestrator.authoring.context",
}

if TYPE_CHECKING:
    from orchestrator.authoring.assets import Asset, all_of, any_of
    from orchestrator.authoring.context import TaskContext, get_current_context, trigger_run
    from orchestrator.authoring.dag import DAG, dag
    from orchestrator.authoring.defer import Defer, defer
    from orchestrator.authoring.operators import BaseOperator, Shell
    from orchestrator.authoring.references import Output
    from orchestrator.authoring.run_sources import DagFinished
    from orchestrator.authoring.taskflow import task
    from orchestrator.authoring.tasks import Fail, Skip, chain
    from orchestrator.authoring.trigger_rules import TriggerRule
    from orchestrator.scheduling.engine import Engine
    from orchestrator.state import RunState, TaskState


__getattr__, __dir__ = lazy_exports("orchestrator", globals(), _WHERE, ("__version__",))
