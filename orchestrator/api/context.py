"""What every handler of the API works with: the engine, the tokens and webhooks, the limits."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from orchestrator.api.limits import RateLimiter
from orchestrator.api.replays import ReplayGuard
from orchestrator.errors import RunLimitError
from orchestrator.metrics.instruments import EngineMetrics

if TYPE_CHECKING:
    from orchestrator.api.registry import ApiRegistry
    from orchestrator.clock import Clock
    from orchestrator.config import Settings
    from orchestrator.scheduling.engine import Engine
    from orchestrator.store import Store
    from orchestrator.store.records import TokenRecord


@dataclass(eq=False)
class ApiContext:
    """The daemon's parts the API reaches; one per running server."""

    engine: Engine
    registry: ApiRegistry
    limiter: RateLimiter = field(init=False)
    replays: ReplayGuard = field(init=False)
    metrics: EngineMetrics = field(init=False)  # `GET /metrics`; counts from the API's start
    stopping: bool = False  # the daemon is shutting down: health says so, triggers are refused

    def __post_init__(self) -> None:
        self.limiter = RateLimiter(self.engine.clock)
        self.replays = ReplayGuard(self.engine.clock)
        self.metrics = EngineMetrics.attach(self.engine)

    @property
    def settings(self) -> Settings:
        return self.engine.settings

    @property
    def store(self) -> Store:
        return self.engine.store

    @property
    def clock(self) -> Clock:
        return self.engine.clock

    def authenticate(self, authorization: str | None, needed: str) -> TokenRecord:
        """The caller's token, if it grants `needed`; `AuthError` (401 or 403) otherwise."""
        return self.registry.authenticate(authorization, needed=needed, now=self.clock.now())

    def limit(self, key: str, rate: float, what: str) -> None:
        """Take one request from `key`'s budget of `rate` per second; 429 when it is spent."""
        wait = self.limiter.acquire(key, rate)
        if wait is not None:
            raise RunLimitError(
                f"{what} is limited to {rate:g} requests per second; try again in {wait:.2f} s",
                retry_after=wait,
            )
