"""Event sources: what tasks wait on and what starts runs. One module per source.

```python
from triggers import FileTrigger, S3Trigger, HttpTrigger, TimeTrigger, ExternalRunTrigger
```

Names are imported on first use: importing `triggers.base` (as worker processes do) does not
pull in aiobotocore or httpx.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from orchestrator.lazy import lazy_exports

__all__ = (
    "ExternalRunTrigger",
    "FileTrigger",
    "HttpTrigger",
    "S3Trigger",
    "TimeTrigger",
    "Trigger",
    "TriggerEvent",
    "load_trigger",
)

_WHERE = {
    "ExternalRunTrigger": "triggers.external",
    "FileTrigger": "triggers.file",
    "HttpTrigger": "triggers.http",
    "S3Trigger": "triggers.s3",
    "TimeTrigger": "triggers.time",
    "Trigger": "triggers.base",
    "TriggerEvent": "triggers.base",
    "load_trigger": "triggers.base",
}

if TYPE_CHECKING:
    from triggers.base import Trigger, TriggerEvent, load_trigger
    from triggers.external import ExternalRunTrigger
    from triggers.file import FileTrigger
    from triggers.http import HttpTrigger
    from triggers.s3 import S3Trigger
    from triggers.time import TimeTrigger


__getattr__, __dir__ = lazy_exports("triggers", globals(), _WHERE)
