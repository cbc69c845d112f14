"""A real API server on a free loopback port, over a real engine, for httpx to talk to.

```python
async with serving(settings, dag) as served:
    answer = await served.client.get("/api/v1/dags", headers=served.auth("read"))
```

`served.tokens` holds one token per scope (and `served.auth(scope)` the header for it);
webhooks are added with `await served.add_webhook(...)`, their secrets read from `served.env`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio
import httpx

from helpers import bag_of
from orchestrator import DAG, task
from orchestrator.api.app import create_app
from orchestrator.api.context import ApiContext
from orchestrator.api.registry import ApiRegistry
from orchestrator.api.server import serve_api
from orchestrator.clock import Clock
from orchestrator.config import Settings
from orchestrator.scheduling.engine import Engine
from orchestrator.store.records import WebhookRecord

SCOPES = ("read", "trigger", "admin")


def hello_dag() -> DAG:
    """The smallest DAG: `hello`, one in-process task."""
    with DAG("hello") as dag:

        @task(in_process=True)
        def say() -> str:
            return "hello"

        say()
    return dag


@dataclass(eq=False)
class Served:
    engine: Engine
    api: ApiContext
    client: httpx.AsyncClient
    url: str
    env: dict[str, str]
    tokens: dict[str, str] = field(default_factory=dict)

    def auth(self, scope: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[scope]}"}

    async def add_webhook(self, name: str, dag_id: str, secret: str, **fields: Any) -> None:
        variable = f"SECRET_{name.upper().replace('-', '_').replace('.', '_')}"
        self.env[variable] = secret
        record = WebhookRecord(
            name=name,
            dag_id=dag_id,
            secret_env=variable,
            created_at=self.engine.clock.now(),
            **fields,
        )
        await self.api.registry.add_webhook(self.engine.store, record)


@asynccontextmanager
async def serving(
    settings: Settings, *dags: DAG, clock: Clock | None = None
) -> AsyncIterator[Served]:
    env: dict[str, str] = {}
    async with Engine.open(settings, dagbag=bag_of(*dags), clock=clock) as engine:
        registry = await ApiRegistry.load(engine.store, environ=env)
        api = ApiContext(engine, registry)
        async with anyio.create_task_group() as tg:
            url = await tg.start(serve_api, create_app(api), settings)
            async with httpx.AsyncClient(base_url=url, timeout=30) as client:
                served = Served(engine, api, client, url, env)
                for scope in SCOPES:
                    _, text = await registry.create_token(
                        engine.store,
                        f"test-{scope}",
                        scope,
                        now=engine.clock.now(),
                        expires_at=None,
                    )
                    served.tokens[scope] = text
                yield served
            tg.cancel_scope.cancel()
