"""Webhook secret files: only small regular files, read off the event loop, re-read on change."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import anyio
import pytest
from apikit import hello_dag, serving

from orchestrator.api.registry import ApiRegistry
from orchestrator.api.secretfiles import MAX_SECRET_FILE_BYTES, SecretFileCache
from orchestrator.api.signatures import sign_github
from orchestrator.config import Settings
from orchestrator.errors import RunError
from orchestrator.store import open_store
from orchestrator.store.records import WebhookRecord

SettingsFactory = Callable[..., Settings]
BODY = json.dumps({"ref": "refs/heads/main"}).encode()


def hook(path: Path) -> WebhookRecord:
    return WebhookRecord(name="deploy", dag_id="hello", secret_file=str(path))


def headers(secret: str, delivery: str) -> dict[str, str]:
    return {
        "X-GitHub-Event": "push",
        "X-GitHub-Delivery": delivery,
        "X-Hub-Signature-256": sign_github(secret.encode(), BODY + delivery.encode()),
    }


async def test_a_fifo_or_an_oversized_secret_file_is_refused_when_the_webhook_is_added(
    tmp_path: Path,
) -> None:
    fifo = tmp_path / "secret.fifo"
    os.mkfifo(fifo)
    huge = tmp_path / "huge.secret"
    huge.write_text("x" * (MAX_SECRET_FILE_BYTES + 1))
    async with open_store(tmp_path / "state") as store:
        registry = await ApiRegistry.load(store, environ={})
        with anyio.fail_after(10):  # before the fix, opening the FIFO waited for a writer
            with pytest.raises(RunError, match="is not a regular file"):
                await registry.add_webhook(store, hook(fifo))
        with pytest.raises(RunError, match=f"larger than {MAX_SECRET_FILE_BYTES} bytes"):
            await registry.add_webhook(store, hook(huge))
        assert await store.list_webhooks() == []


async def test_a_secret_file_swapped_for_a_fifo_refuses_deliveries_and_the_daemon_answers(
    make_settings: SettingsFactory, tmp_path: Path
) -> None:
    path = tmp_path / "deploy.secret"
    path.write_text("first\n")
    async with serving(make_settings(), hello_dag()) as served:
        await served.api.registry.add_webhook(served.engine.store, hook(path))
        path.unlink()
        os.mkfifo(path)
        with anyio.fail_after(10):  # before the fix, the event loop blocked in open()
            refused = await served.client.post(
                "/hooks/deploy", content=BODY + b"1", headers=headers("first", "1")
            )
            health = await served.client.get("/api/v1/health")
        assert refused.status_code == 503, refused.text
        assert health.status_code == 200


async def test_a_secret_file_is_read_again_only_when_it_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "deploy.secret"
    path.write_text("first\n")
    cache = SecretFileCache()
    opened: list[str] = []
    real_open = os.open

    def counting_open(name: str, flags: int, *args: int) -> int:
        opened.append(name)
        return real_open(name, flags, *args)

    monkeypatch.setattr(os, "open", counting_open)
    for _ in range(3):
        assert await cache.read(str(path), where="webhook deploy") == ["first"]
    assert len(opened) == 1
    path.write_text("first\nsecond and longer\n")  # a rotation: the size changes
    assert await cache.read(str(path), where="webhook deploy") == ["first", "second and longer"]
    assert len(opened) == 2
