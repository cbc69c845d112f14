"""`RegistryOps`: the control-socket requests that manage API tokens and webhooks.

A mixin of the daemon's `DaemonControl`, which answers `{"op": "tokens_create", ...}` with
`_op_tokens_create` and so on. While a daemon runs it is the store's only writer and holds the
`ApiRegistry` the HTTP API checks requests against, so `orchestrator tokens ...` and
`orchestrator webhooks ...` go through it and take effect at once.

Replies never hold a token's hash; only `tokens_create` holds the token itself, once.
`LocalRegistryOps` answers the same requests with no daemon, for the CLI, so both paths
check and write alike.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from orchestrator.api.tokens import check_expires_in, token_json
from orchestrator.api.webhookconfig import webhook_from_json, webhook_json
from orchestrator.errors import RunError

if TYPE_CHECKING:
    from orchestrator.api.registry import ApiRegistry
    from orchestrator.clock import Clock
    from orchestrator.loading.dagbag import DagBag
    from orchestrator.scheduling.engine import Engine
    from orchestrator.store.base import Store


class RegistryOps:
    """Token and webhook requests; the class using it provides `engine` and `registry`."""

    engine: Engine
    registry: ApiRegistry
    # A webhook whose secret this process cannot read is refused (see ApiRegistry.add_webhook).
    check_secrets_on_add = True

    def _api_store(self) -> Store:
        return self.engine.store

    def _api_now(self) -> float:
        return self.engine.clock.now()

    def _check_dag(self, dag_id: str) -> None:
        """Raise `DagNotFoundError`, listing the DAGs there are, unless `dag_id` is loaded."""
        self.engine.dagbag.get(dag_id)

    async def _op_tokens_create(self, request: dict[str, Any]) -> dict[str, Any]:
        """`scope`, optional `name` and `expires_in` (seconds from now; None: never)."""
        now = self._api_now()
        expires_in = check_expires_in(request.get("expires_in"))
        record, text = await self.registry.create_token(
            self._api_store(),
            _optional_text(request, "name"),
            _text(request, "scope"),
            now=now,
            expires_at=None if expires_in is None else now + expires_in,
        )
        return {"token": text, **token_json(record)}

    async def _op_tokens_revoke(self, request: dict[str, Any]) -> dict[str, Any]:
        token_id = _text(request, "token_id")
        self.registry.token(token_id)  # an unknown id is refused, listing the known ones
        record = await self.registry.revoke_token(self._api_store(), token_id, now=self._api_now())
        return token_json(record)

    async def _op_tokens_list(self, request: dict[str, Any]) -> dict[str, Any]:
        tokens = sorted(self.registry.tokens.values(), key=lambda t: (t.created_at, t.token_id))
        return {"tokens": [token_json(record) for record in tokens]}

    async def _op_webhooks_add(self, request: dict[str, Any]) -> dict[str, Any]:
        """`webhook` (the definition's fields as JSON) and optional `replace`."""
        record = webhook_from_json(request.get("webhook"), created_at=self._api_now())
        self._check_dag(record.dag_id)
        replace = request.get("replace", False)
        if not isinstance(replace, bool):
            raise RunError("the request's `replace` must be true or false")
        await self.registry.add_webhook(
            self._api_store(), record, replace=replace, check_secrets=self.check_secrets_on_add
        )
        return {"webhook": webhook_json(record)}

    async def _op_webhooks_remove(self, request: dict[str, Any]) -> dict[str, Any]:
        name = _text(request, "name")
        self.registry.require_webhook(name)  # an unknown name is refused, listing the known ones
        record = await self.registry.remove_webhook(self._api_store(), name)
        return {"webhook": webhook_json(record)}

    async def _op_webhooks_list(self, request: dict[str, Any]) -> dict[str, Any]:
        webhooks = sorted(self.registry.webhooks.values(), key=lambda webhook: webhook.name)
        return {"webhooks": [webhook_json(record) for record in webhooks]}


class LocalRegistryOps(RegistryOps):
    """The same requests with no daemon running: the CLI, under the state directory's lock.

    Secrets are not required at `webhooks add`: this shell's environment is not the
    daemon's, so the command checks them itself and only warns about a variable it lacks.
    `store` is None to answer listings before anything was recorded.
    """

    check_secrets_on_add = False

    def __init__(
        self, store: Store | None, registry: ApiRegistry, *, clock: Clock, dagbag: DagBag | None
    ) -> None:
        self.registry = registry
        self._store = store
        self._clock = clock
        self._dagbag = dagbag

    async def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        """Answer `request` as the daemon's control socket would."""
        op = request.get("op")
        method = getattr(self, f"_op_{op}", None) if isinstance(op, str) else None
        if method is None:
            raise RunError(f"unknown request {op!r}")
        result: dict[str, Any] = await method(request)
        return result

    def _api_store(self) -> Store:
        if self._store is None:  # only reads are answered before the store exists
            raise RunError("nothing is recorded yet, so there is nothing to change")
        return self._store

    def _api_now(self) -> float:
        return self._clock.now()

    def _check_dag(self, dag_id: str) -> None:
        if self._dagbag is not None:
            self._dagbag.get(dag_id)


def _text(request: dict[str, Any], name: str) -> str:
    value = request.get(name)
    if not isinstance(value, str) or not value:
        raise RunError(f"the request needs `{name}` as a non-empty string")
    return value


def _optional_text(request: dict[str, Any], name: str) -> str:
    value = request.get(name)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise RunError(f"the request's `{name}` must be a string")
    return value
