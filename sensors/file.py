"""`FileSensor`: wait for a file matching a pattern to land in a folder (OS events, no polling).

```python
landed = FileSensor(task_id="landed", directory="data/incoming", pattern="*.csv")
```

The result is the event: `{"path", "name", "directory", "size", "mtime"}`. A file counts when
it is complete: written elsewhere and renamed into place (the default), or unchanged for
`stable_for` seconds. A `directory` taken from params or conf must lie under the configured
`allowed_roots`, and so must each file it reports: a symlink in it counts only if its target
does.
"""

from __future__ import annotations

import logging
from typing import Any

from orchestrator.authoring.retry import Duration, seconds
from sensors.base import BaseSensor, SensorArgs
from triggers.base import Trigger
from triggers.file import FileTrigger, pattern_warning

logger = logging.getLogger("orchestrator.sensors")


class FileSensor(BaseSensor):
    """Wait until a complete file matching `pattern` is in `directory`."""

    def __init__(
        self,
        *,
        task_id: str,
        directory: Any,
        pattern: Any = "*",
        recursive: bool = False,
        stable_for: Duration = 0.0,
        polling: bool | None = None,
        poke_interval: Duration = 1.0,
        **options: Any,
    ) -> None:
        fields = {"directory": directory, "pattern": pattern}
        super().__init__(task_id=task_id, fields=fields, poke_interval=poke_interval, **options)
        self.recursive = recursive
        self.stable_for = stable_for  # checked with the other arguments, at the sensor's line
        self.polling = polling
        self.check_arguments()
        if isinstance(pattern, str) and (problem := pattern_warning(pattern, recursive)):
            site = self.site
            logger.warning("%s:%s: FileSensor %r: %s", site.file, site.line, task_id, problem)

    def make_trigger(self, args: SensorArgs) -> Trigger:
        return FileTrigger(
            directory=str(args["directory"]),
            pattern=str(args["pattern"]),
            recursive=self.recursive,
            stable_for=seconds(self.stable_for) or 0.0,
            polling=self.polling,
            poll_interval=self.poke_interval,
            trusted=args.trusted("directory", "pattern"),
        )
