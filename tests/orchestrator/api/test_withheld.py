"""Webhook secrets leave the environment tasks inherit, and stay readable by their webhooks."""

from __future__ import annotations

from pathlib import Path

from orchestrator.api.registry import ApiRegistry
from orchestrator.api.withheld import WithheldEnviron, withhold_webhook_secrets
from orchestrator.store import open_store
from orchestrator.store.records import WebhookRecord


async def test_a_webhook_added_while_the_daemon_runs_withholds_its_variable_at_once(
    tmp_path: Path,
) -> None:
    inherited = {
        "LATER_SECRET": "s3cret",
        "ORCHESTRATOR_DB_PASSWORD": "hunter2",
        "ORCHESTRATOR_STATE_DIR": "/srv/state",
        "ORCHESTRATOR_RUN_ID": "run-1",
    }
    environ = WithheldEnviron(inherited)
    withhold_webhook_secrets(environ, [None])
    assert sorted(inherited) == ["LATER_SECRET", "ORCHESTRATOR_RUN_ID", "ORCHESTRATOR_STATE_DIR"]
    assert environ["ORCHESTRATOR_DB_PASSWORD"] == "hunter2"
    async with open_store(tmp_path) as store:
        registry = await ApiRegistry.load(store, environ=environ)
        record = WebhookRecord(name="later", dag_id="etl", secret_env="LATER_SECRET")
        await registry.add_webhook(store, record)
        assert "LATER_SECRET" not in inherited
        assert await registry.secrets("later") == [b"s3cret"]
    inherited["LATER_SECRET"] = "rotated"  # set again (a test, a reload): the new value wins
    assert environ["LATER_SECRET"] == "rotated"
    assert len(environ) == len(set(environ)) == 4
