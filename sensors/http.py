"""`HttpSensor`: poll an HTTP endpoint until its answer says the thing is done.

```python
done = HttpSensor(task_id="done", url="https://ci.example.com/jobs/42",
                  json_path="state", json_value="finished")
```

The result is the event: `{"url", "status", "json", "text"}`. A URL taken from params or conf
is untrusted: it must pass the input policy (no loopback, private, link-local or metadata
addresses, checked after resolution and on every redirect) unless the configuration allows it.
"""

from __future__ import annotations

from typing import Any

from orchestrator.authoring.retry import Duration
from sensors.base import BaseSensor, SensorArgs
from triggers.base import JSON, Trigger
from triggers.http import HttpTrigger


class HttpSensor(BaseSensor):
    """Wait until `url` answers with an expected status, JSON value, or passing `check`."""

    def __init__(
        self,
        *,
        task_id: str,
        url: Any,
        method: str = "GET",
        headers: dict[str, str] | None = None,
        body: str | None = None,
        expect_status: tuple[int, ...] = (200,),
        json_path: str | None = None,
        json_value: JSON = None,
        check: str | None = None,
        request_timeout: float = 10.0,
        poke_interval: Duration = 5.0,
        **options: Any,
    ) -> None:
        super().__init__(
            task_id=task_id, fields={"url": url}, poke_interval=poke_interval, **options
        )
        self.method = method
        self.headers = headers
        self.body = body
        self.expect_status = tuple(expect_status)
        self.json_path = json_path
        self.json_value = json_value
        self.check = check
        self.request_timeout = request_timeout
        self.check_arguments()

    def make_trigger(self, args: SensorArgs) -> Trigger:
        return HttpTrigger(
            url=str(args["url"]),
            method=self.method,
            headers=self.headers,
            body=self.body,
            expect_status=self.expect_status,
            json_path=self.json_path,
            json_value=self.json_value,
            check=self.check,
            request_timeout=self.request_timeout,
            poll_interval=self.poke_interval,
            max_poll_interval=max(self.max_poke_interval, self.poke_interval),
            trusted=args.trusted("url"),
        )
