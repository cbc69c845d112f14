"""The API registry on a real store, its control-socket requests, and migration 4."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from helpers import bag_of
from orchestrator import DAG
from orchestrator.api.registry import ApiRegistry
from orchestrator.api.registryops import LocalRegistryOps, RegistryOps
from orchestrator.clock import FakeClock
from orchestrator.errors import AuthError, DagNotFoundError, RunError, StoreError
from orchestrator.store import WebhookRecord, WriteBatch, open_store
from orchestrator.store.migrations import LATEST_VERSION, MIGRATIONS, split_statements

ENVIRON = {"RETRAIN_SECRET": "env-secret"}


def retrain(**changes: Any) -> WebhookRecord:
    base = WebhookRecord(
        name="retrain",
        dag_id="train",
        secret_env="RETRAIN_SECRET",
        filters=[("header.X-GitHub-Event", "push")],
        conf_map={"sha": "after"},
        created_at=1_800_000_000.0,
    )
    return replace(base, **changes)


# -- tokens --------------------------------------------------------------------------------------


async def test_a_created_token_authenticates_at_once_and_after_a_reload(tmp_path: Path) -> None:
    clock = FakeClock()
    async with open_store(tmp_path) as store:
        registry = await ApiRegistry.load(store)
        assert (registry.tokens, registry.webhooks) == ({}, {})
        record, text = await registry.create_token(
            store, "ci", "trigger", now=clock.now(), expires_at=clock.now() + 60
        )
        header = f"Bearer {text}"
        assert registry.authenticate(header, needed="trigger", now=clock.now()) == record
        reloaded = await ApiRegistry.load(store)
        assert reloaded.tokens == {record.token_id: record}
        assert reloaded.authenticate(header, needed="read", now=clock.now()) == record
        clock.advance(60)
        with pytest.raises(AuthError) as caught:
            reloaded.authenticate(header, needed="read", now=clock.now())
        assert caught.value.code == "expired_token"


async def test_a_revoked_token_is_refused_at_once_and_stays_revoked(tmp_path: Path) -> None:
    clock = FakeClock()
    async with open_store(tmp_path) as store:
        registry = await ApiRegistry.load(store)
        record, text = await registry.create_token(
            store, "ci", "admin", now=clock.now(), expires_at=None
        )
        clock.advance(5)
        revoked = await registry.revoke_token(store, record.token_id, now=clock.now())
        assert revoked.revoked_at == clock.now()
        clock.advance(5)
        again = await registry.revoke_token(store, record.token_id, now=clock.now())
        assert again.revoked_at == revoked.revoked_at  # the first moment is kept
        with pytest.raises(AuthError) as caught:
            registry.authenticate(f"Bearer {text}", needed="read", now=clock.now())
        assert caught.value.code == "revoked_token"
        assert (await ApiRegistry.load(store)).tokens[record.token_id] == revoked


async def test_revoking_an_unknown_token_lists_the_known_ids(tmp_path: Path) -> None:
    async with open_store(tmp_path) as store:
        registry = await ApiRegistry.load(store)
        with pytest.raises(RunError, match=r"no API token with id 'abc' \(known ids: none yet\)"):
            await registry.revoke_token(store, "abc", now=0.0)
        record, _ = await registry.create_token(store, "", "read", now=1.0, expires_at=None)
        with pytest.raises(RunError, match=f"known ids: {record.token_id}"):
            await registry.revoke_token(store, "abc", now=2.0)


async def test_a_token_that_fails_to_commit_is_not_accepted(tmp_path: Path) -> None:
    async with open_store(tmp_path) as store:
        registry = await ApiRegistry.load(store)
    with pytest.raises(StoreError, match="is closed"):
        await registry.create_token(store, "ci", "read", now=1.0, expires_at=None)
    assert registry.tokens == {}


# -- webhooks ------------------------------------------------------------------------------------


async def test_webhooks_are_added_replaced_and_removed_in_memory_and_store(
    tmp_path: Path,
) -> None:
    async with open_store(tmp_path) as store:
        registry = await ApiRegistry.load(store, environ=ENVIRON)
        await registry.add_webhook(store, retrain())
        assert registry.webhook("retrain") == retrain()
        assert await store.list_webhooks() == [retrain()]
        with pytest.raises(RunError, match="webhook retrain exists; remove it first or use"):
            await registry.add_webhook(store, retrain(dag_id="other"))
        await registry.add_webhook(store, retrain(dag_id="other", rate=3.0), replace=True)
        assert (await ApiRegistry.load(store)).webhooks == {
            "retrain": retrain(dag_id="other", rate=3.0)
        }
        removed = await registry.remove_webhook(store, "retrain")
        assert removed.dag_id == "other"
        assert registry.webhook("retrain") is None
        assert await store.list_webhooks() == []
        with pytest.raises(RunError, match=r"there is no webhook 'retrain' \(known: none yet\)"):
            await registry.remove_webhook(store, "retrain")


async def test_a_webhook_whose_secret_cannot_be_read_is_refused_before_it_is_stored(
    tmp_path: Path,
) -> None:
    async with open_store(tmp_path) as store:
        registry = await ApiRegistry.load(store, environ={})
        with pytest.raises(RunError) as caught:
            await registry.add_webhook(store, retrain())
        assert "the environment variable RETRAIN_SECRET is not set" in str(caught.value)
        with pytest.raises(RunError, match="needs exactly one secret source"):
            await registry.add_webhook(store, retrain(secret_env=None))
        assert await store.list_webhooks() == []
        await registry.add_webhook(store, retrain(), check_secrets=False)  # the CLI, no daemon
        assert registry.secret_problems() == [
            "webhook retrain: the environment variable RETRAIN_SECRET is not set in the "
            "daemon's environment; set it where the daemon starts (its systemd unit or shell) "
            "and restart the daemon"
        ]


async def test_secrets_are_read_each_time_so_a_rotated_file_applies_at_once(
    tmp_path: Path,
) -> None:
    secret_file = tmp_path / "retrain.secret"
    secret_file.write_text("first\n")
    record = retrain(secret_env=None, secret_file=str(secret_file))
    async with open_store(tmp_path / "state") as store:
        registry = await ApiRegistry.load(store)
        await registry.add_webhook(store, record)
        assert await registry.secrets("retrain") == [b"first"]
        secret_file.write_text("first\nsecond\n")
        assert await registry.secrets("retrain") == [b"first", b"second"]
        secret_file.unlink()
        with pytest.raises(RunError, match="cannot read the secret file"):
            await registry.secrets("retrain")
        assert registry.secret_problems()[0].startswith("webhook retrain: cannot read")
        with pytest.raises(RunError, match="there is no webhook 'nope'"):
            await registry.secrets("nope")


async def test_the_store_refuses_duplicate_and_unknown_webhooks_itself(tmp_path: Path) -> None:
    async with open_store(tmp_path) as store:
        batch = WriteBatch()
        batch.put_webhook(retrain())
        await store.commit(batch)
        with pytest.raises(StoreError, match="webhook retrain exists; remove it first or use"):
            await store.commit(batch)
        batch = WriteBatch()
        batch.delete_webhook("nope")
        with pytest.raises(StoreError, match="there is no webhook 'nope' to remove"):
            await store.commit(batch)
        assert await store.list_webhooks() == [retrain()]


# -- control-socket requests ---------------------------------------------------------------------


def control(store: Any, registry: ApiRegistry, clock: FakeClock) -> RegistryOps:
    """What the daemon's DaemonControl gives the mixin: an engine and the registry."""
    with DAG("train") as dag:
        pass
    ops = RegistryOps()
    ops.engine = SimpleNamespace(store=store, clock=clock, dagbag=bag_of(dag))  # type: ignore[assignment]
    ops.registry = registry
    return ops


async def test_token_requests_create_list_and_revoke_without_leaking_hashes(
    tmp_path: Path,
) -> None:
    clock = FakeClock()
    async with open_store(tmp_path) as store:
        ops = control(store, await ApiRegistry.load(store), clock)
        created = await ops._op_tokens_create({"scope": "read", "name": "ci", "expires_in": 60})
        assert created["token"].startswith(f"orch_{created['token_id']}_")
        assert created["expires_at"] == clock.now() + 60 and "secret_hash" not in created
        listed = await ops._op_tokens_list({})
        assert listed == {"tokens": [{k: v for k, v in created.items() if k != "token"}]}
        clock.advance(1)
        revoked = await ops._op_tokens_revoke({"token_id": created["token_id"]})
        assert revoked["revoked_at"] == clock.now() and "token" not in revoked
        assert created["token"][18:] not in repr(await ops._op_tokens_list({}))


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        ({}, "the request needs `scope` as a non-empty string"),
        ({"scope": "root"}, "unknown token scope 'root'"),
        ({"scope": "read", "name": 5}, "the request's `name` must be a string"),
        ({"scope": "read", "expires_in": 0}, "`expires_in` must be a number of seconds above 0"),
        ({"scope": "read", "expires_in": "1d"}, "`expires_in` must be a number"),
    ],
)
async def test_bad_token_requests_are_refused(
    tmp_path: Path, request_: dict[str, Any], message: str
) -> None:
    async with open_store(tmp_path) as store:
        ops = control(store, await ApiRegistry.load(store), FakeClock())
        with pytest.raises(RunError, match=message):
            await ops._op_tokens_create(request_)
        with pytest.raises(RunError, match="needs `token_id`"):
            await ops._op_tokens_revoke({"token_id": ""})
        assert await store.list_tokens() == []


async def test_webhook_requests_check_the_dag_and_round_trip(tmp_path: Path) -> None:
    clock = FakeClock()
    definition = {"name": "retrain", "dag_id": "train", "secret_env": "RETRAIN_SECRET"}
    async with open_store(tmp_path) as store:
        ops = control(store, await ApiRegistry.load(store, environ=ENVIRON), clock)
        with pytest.raises(DagNotFoundError, match="no DAG with id 'trian'"):
            await ops._op_webhooks_add({"webhook": {**definition, "dag_id": "trian"}})
        with pytest.raises(RunError, match="`replace` must be true or false"):
            await ops._op_webhooks_add({"webhook": definition, "replace": "yes"})
        added = await ops._op_webhooks_add({"webhook": definition})
        assert added["webhook"]["created_at"] == clock.now()
        assert added["webhook"]["kind"] == "github" and added["webhook"]["filters"] == []
        assert await ops._op_webhooks_list({}) == {"webhooks": [added["webhook"]]}
        with pytest.raises(RunError, match="webhook retrain exists"):
            await ops._op_webhooks_add({"webhook": definition})
        removed = await ops._op_webhooks_remove({"name": "retrain"})
        assert removed == added
        assert await ops._op_webhooks_list({}) == {"webhooks": []}
        with pytest.raises(RunError, match="the request needs `webhook` as a JSON object"):
            await ops._op_webhooks_add({})


async def test_local_requests_answer_like_the_daemon_without_one(tmp_path: Path) -> None:
    clock = FakeClock()
    async with open_store(tmp_path) as store:
        registry = await ApiRegistry.load(store, environ={})
        local = LocalRegistryOps(store, registry, clock=clock, dagbag=None)
        definition = {"name": "retrain", "dag_id": "train", "secret_env": "RETRAIN_SECRET"}
        added = await local.handle({"op": "webhooks_add", "webhook": definition})
        assert added["webhook"]["name"] == "retrain"  # no secret here: the daemon's may differ
        with pytest.raises(RunError, match="unknown request 'explode'"):
            await local.handle({"op": "explode"})
    empty = LocalRegistryOps(None, ApiRegistry({}, {}, environ={}), clock=clock, dagbag=None)
    assert await empty.handle({"op": "tokens_list"}) == {"tokens": []}
    with pytest.raises(RunError, match=r"no API token with id 'abc' \(known ids: none yet\)"):
        await empty.handle({"op": "tokens_revoke", "token_id": "abc"})
    with pytest.raises(RunError, match="nothing is recorded yet, so there is nothing to change"):
        await empty.handle({"op": "tokens_create", "scope": "read"})


# -- migration 4 ---------------------------------------------------------------------------------


async def test_migration_4_adds_the_api_tables_to_a_version_3_database(tmp_path: Path) -> None:
    assert LATEST_VERSION >= 4 and MIGRATIONS[3].number == 4
    tmp_path.mkdir(exist_ok=True)
    db_path = tmp_path / "orchestrator.db"
    with closing(sqlite3.connect(db_path)) as connection:
        for migration in MIGRATIONS[:3]:
            for statement in split_statements(migration.sql):
                connection.execute(statement)
        connection.execute(
            "INSERT INTO dags (dag_id, fileloc, updated_at) VALUES ('train', 'dags/t.py', 1.0)"
        )
        connection.execute("PRAGMA user_version = 3")
        connection.commit()
    async with open_store(tmp_path) as store:
        assert [dag.dag_id for dag in await store.list_dags()] == ["train"]
        assert (await store.list_tokens(), await store.list_webhooks()) == ([], [])
        registry = await ApiRegistry.load(store, environ=ENVIRON)
        await registry.add_webhook(store, retrain())
    with closing(sqlite3.connect(db_path)) as connection:
        assert connection.execute("PRAGMA user_version").fetchone() == (LATEST_VERSION,)
        tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master")}
        assert {"api_tokens", "webhooks"} <= tables
        row = connection.execute("SELECT filters, conf_map FROM webhooks").fetchone()
    assert row == ('[["header.X-GitHub-Event","push"]]', '{"sha":"after"}')
