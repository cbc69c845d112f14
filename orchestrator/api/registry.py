"""`ApiRegistry`: the daemon's in-memory copy of the API tokens and webhook definitions.

Every request is authenticated against memory, so checking a token costs no database read.
Changes go to the store first and to memory only once committed, so memory never holds what
a crash would lose. The daemon is the store's only writer, so nothing else changes these
rows behind its back; a command run without a daemon loads its own registry for the write.

Webhook secrets are not held: `secrets` reads them from the environment, or from the file
(off the event loop, again only once it changed) on each delivery, so a rotated secret file
applies without a restart. In the daemon the environment is a `WithheldEnviron`: each
`--secret-env` variable is taken out of what tasks inherit as soon as a webhook names it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import replace
from typing import TYPE_CHECKING

from orchestrator.api.secretfiles import SecretFileCache
from orchestrator.api.tokens import check_token, new_token
from orchestrator.api.webhookconfig import check_webhook, read_secrets, secret_keys
from orchestrator.api.withheld import WithheldEnviron
from orchestrator.errors import OrchestratorError, RunError
from orchestrator.store.base import WriteBatch
from orchestrator.store.records import TokenRecord, WebhookRecord

if TYPE_CHECKING:
    from orchestrator.store.base import Store


class ApiRegistry:
    """The tokens (by id) and webhooks (by name) the API accepts; load it with `load`."""

    def __init__(
        self,
        tokens: Mapping[str, TokenRecord],
        webhooks: Mapping[str, WebhookRecord],
        *,
        environ: Mapping[str, str],
    ) -> None:
        self.tokens: dict[str, TokenRecord] = dict(tokens)
        self.webhooks: dict[str, WebhookRecord] = dict(webhooks)
        self._environ = environ
        self._files = SecretFileCache()

    @classmethod
    async def load(cls, store: Store, *, environ: Mapping[str, str] = os.environ) -> ApiRegistry:
        """The registry as recorded in `store`; `environ` is where env-var secrets are read."""
        tokens = {token.token_id: token for token in await store.list_tokens()}
        webhooks = {webhook.name: webhook for webhook in await store.list_webhooks()}
        return cls(tokens, webhooks, environ=environ)

    # -- tokens --------------------------------------------------------------------------------

    async def create_token(
        self, store: Store, name: str, scope: str, *, now: float, expires_at: float | None
    ) -> tuple[TokenRecord, str]:
        """Create and record a token; return it and its text (shown once, never stored)."""
        record, text = new_token(name, scope, now=now, expires_at=expires_at)
        batch = WriteBatch()
        batch.put_token(record)
        await store.commit(batch)
        self.tokens[record.token_id] = record
        return record, text

    async def revoke_token(self, store: Store, token_id: str, *, now: float) -> TokenRecord:
        """Refuse the token from now on; revoking it again keeps the first moment."""
        record = self.token(token_id)
        if record.revoked_at is not None:
            return record
        batch = WriteBatch()
        batch.revoke_token(token_id, now)
        await store.commit(batch)
        revoked = replace(record, revoked_at=now)
        self.tokens[token_id] = revoked
        return revoked

    def token(self, token_id: str) -> TokenRecord:
        """The token with this id; `RunError` listing the known ids otherwise."""
        record = self.tokens.get(token_id)
        if record is None:
            known = ", ".join(sorted(self.tokens)) or "none yet"
            raise RunError(
                f"there is no API token with id {token_id!r} (known ids: {known}); "
                "`orchestrator tokens list` shows them"
            )
        return record

    def authenticate(self, authorization: str | None, *, needed: str, now: float) -> TokenRecord:
        """The caller's token if it grants `needed`; `AuthError` (401 or 403) otherwise."""
        return check_token(self.tokens, authorization, needed=needed, now=now)

    # -- webhooks ------------------------------------------------------------------------------

    async def add_webhook(
        self,
        store: Store,
        record: WebhookRecord,
        *,
        replace: bool = False,
        check_secrets: bool = True,
    ) -> None:
        """Record a definition. Checking that its DAG exists is the caller's job.

        With `check_secrets` (the daemon), its secret must be readable now, in this process's
        environment: a webhook that could verify nothing is refused at once, not at the first
        delivery. A command run without a daemon passes False and warns instead, as the
        daemon's environment may differ from its own.
        """
        check_webhook(record)
        if record.name in self.webhooks and not replace:
            raise RunError(f"webhook {record.name} exists; remove it first or use --replace")
        if check_secrets:
            await self._read_secrets(record)
        batch = WriteBatch()
        batch.put_webhook(record, replace=replace)
        await store.commit(batch)
        self.webhooks[record.name] = record
        if isinstance(self._environ, WithheldEnviron) and record.secret_env is not None:
            self._environ.withhold([record.secret_env])

    async def remove_webhook(self, store: Store, name: str) -> WebhookRecord:
        """Forget a definition: deliveries to `POST /hooks/<name>` are refused from now on."""
        record = self.require_webhook(name)
        batch = WriteBatch()
        batch.delete_webhook(name)
        await store.commit(batch)
        del self.webhooks[name]
        return record

    def webhook(self, name: str) -> WebhookRecord | None:
        """The webhook with this name, or None (deliveries get the 401 of a bad signature)."""
        return self.webhooks.get(name)

    async def secrets(self, name: str) -> list[bytes]:
        """The webhook's secrets, read now (a rotated file applies at once); `RunError` if not."""
        return await self._read_secrets(self.require_webhook(name))

    async def _read_secrets(self, record: WebhookRecord) -> list[bytes]:
        if record.secret_file is None:
            return read_secrets(record, self._environ)
        texts = await self._files.read(record.secret_file, where=f"webhook {record.name}")
        return secret_keys(record, texts)

    def require_webhook(self, name: str) -> WebhookRecord:
        """The webhook with this name; `RunError` listing the known names otherwise."""
        record = self.webhooks.get(name)
        if record is None:
            known = ", ".join(sorted(self.webhooks)) or "none yet"
            raise RunError(
                f"there is no webhook {name!r} (known: {known}); "
                "`orchestrator webhooks list` shows them"
            )
        return record

    def secret_problems(self) -> list[str]:
        """Why each webhook whose secret cannot be read now would refuse its deliveries.

        For the daemon to log at start: a webhook stays defined when its variable or file
        goes missing, and each delivery to it is refused until the secret is back.
        """
        problems: list[str] = []
        for name in sorted(self.webhooks):
            try:
                read_secrets(self.webhooks[name], self._environ)
            except OrchestratorError as error:
                problems.append(str(error))  # names the variable or file, never a secret
        return problems
