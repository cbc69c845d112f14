"""`S3KeySensor`: wait for an object (a key, anything under a prefix, or a wildcard) in S3.

```python
ready = S3KeySensor(task_id="ready", bucket="lake", key="raw/2026-11-21/_SUCCESS")
```

The result is the event: `{"bucket", "key", "size", "etag", "last_modified"}`. S3 cannot push,
so the trigger polls (every `poke_interval`, with jitter, backing off on throttling and
errors). Credentials come from the standard AWS chain and are never stored with the trigger;
`endpoint_url` points it at MinIO or another S3-compatible store.
"""

from __future__ import annotations

from typing import Any

from orchestrator.authoring.retry import Duration
from sensors.base import BaseSensor, SensorArgs
from triggers.base import Trigger
from triggers.s3 import S3Trigger


class S3KeySensor(BaseSensor):
    """Wait until an object matching `key`, `prefix` or `wildcard` exists in `bucket`."""

    def __init__(
        self,
        *,
        task_id: str,
        bucket: Any,
        key: Any = None,
        prefix: Any = None,
        wildcard: Any = None,
        min_size: int = 0,
        marker: str | None = None,
        endpoint_url: str | None = None,
        region_name: str | None = None,
        profile: str | None = None,
        poke_interval: Duration = 5.0,
        **options: Any,
    ) -> None:
        fields = {"bucket": bucket, "key": key, "prefix": prefix, "wildcard": wildcard}
        super().__init__(task_id=task_id, fields=fields, poke_interval=poke_interval, **options)
        self.min_size = min_size
        self.marker = marker
        self.endpoint_url = endpoint_url
        self.region_name = region_name
        self.profile = profile
        self.check_arguments()

    def make_trigger(self, args: SensorArgs) -> Trigger:
        return S3Trigger(
            bucket=args["bucket"],
            key=args["key"],
            prefix=args["prefix"],
            wildcard=args["wildcard"],
            min_size=self.min_size,
            marker=self.marker,
            poll_interval=self.poke_interval,
            max_poll_interval=max(self.max_poke_interval, self.poke_interval),
            endpoint_url=self.endpoint_url,
            region_name=self.region_name,
            profile=self.profile,
        )
