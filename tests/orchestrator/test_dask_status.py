"""The Dask connection's status where people look: `/api/v1/health`, the UI's home page, `ping`,
and the tries' logs while they wait for it.

One single-worker `LocalCluster` on loopback serves the module; the disconnected case points
the daemon at a port nobody listens on.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from apikit import hello_dag, serving
from daskkit import local_cluster
from taskjobs import DagFile
from uikit import ui_serving

from orchestrator.cli.triggers import executor_text
from orchestrator.config import Settings
from orchestrator.daemon.lifecycle import DaemonControl
from orchestrator.execution import dask_connection
from orchestrator.execution.dask_executor import DaskExecutor
from orchestrator.scheduling.engine import Engine

distributed = pytest.importorskip("distributed")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    with local_cluster() as cluster:
        yield cluster


@pytest.fixture
def unreachable(monkeypatch: pytest.MonkeyPatch) -> str:
    """The address of a port nobody listens on; connecting gives up fast."""
    monkeypatch.setattr(dask_connection, "CONNECT_TIMEOUT", 0.3)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"tcp://127.0.0.1:{probe.getsockname()[1]}"


async def _until_connected(engine: Engine) -> None:
    """The executor's status has no event: looked at every 20 ms, under the caller's deadline.

    The worker count comes from the scheduler every few seconds: waited for, too.
    """
    while engine.executor.describe().workers != 1:  # noqa: ASYNC110
        await anyio.sleep(0.02)


async def _until_said(paths: list[Path], text: str) -> None:
    """Until every file has `text` (logs another task writes: no event to wait on)."""
    while not all(p.exists() and text in p.read_text() for p in paths):  # noqa: ASYNC110
        await anyio.sleep(0.02)


async def _until_unreachable(engine: Engine) -> None:
    while "cannot reach" not in engine.executor.describe().detail:  # noqa: ASYNC110
        await anyio.sleep(0.02)


async def test_health_names_the_dask_scheduler_and_its_workers(
    make_settings: Callable[..., Settings], cluster: Any
) -> None:
    address = cluster.scheduler_address
    settings = make_settings(executor="dask", dask_address=address)
    async with serving(settings, hello_dag()) as served:
        with anyio.fail_after(30):
            await _until_connected(served.engine)
        reply = await served.client.get("/api/v1/health")
    assert reply.status_code == 200
    assert reply.json() == {
        "status": "ok",
        "executor": {
            "kind": "dask",
            "connected": True,
            "address": address,
            "workers": 1,
            "detail": f"connected to the Dask scheduler at {address} (1 workers)",
        },
    }


async def test_health_stays_200_and_says_why_while_dask_is_away(
    make_settings: Callable[..., Settings], unreachable: str
) -> None:
    settings = make_settings(executor="dask", dask_address=unreachable)
    async with serving(settings, hello_dag()) as served:
        with anyio.fail_after(30):
            await _until_unreachable(served.engine)
        reply = await served.client.get("/api/v1/health")
    assert reply.status_code == 200
    executor = reply.json()["executor"]
    assert executor["kind"] == "dask" and executor["connected"] is False
    assert executor["address"] == unreachable and executor["workers"] is None
    assert f"cannot reach the Dask scheduler at {unreachable}" in executor["detail"]


async def test_the_home_page_shows_the_executor_or_why_it_is_disconnected(
    make_settings: Callable[..., Settings], cluster: Any, unreachable: str
) -> None:
    connected = make_settings(executor="dask", dask_address=cluster.scheduler_address)
    async with ui_serving(connected, hello_dag()) as served:
        with anyio.fail_after(30):
            await _until_connected(served.engine)
        page = (await served.browser.get("/")).text
    card = page[page.index('data-executor="dask"') :]
    assert "dask, 1 workers" in card[:400] and cluster.scheduler_address in card[:400]
    away = make_settings(executor="dask", dask_address=unreachable)
    async with ui_serving(away, hello_dag()) as served:
        with anyio.fail_after(30):
            await _until_unreachable(served.engine)
        page = (await served.browser.get("/")).text
    card = page[page.index('data-executor="dask"') :]
    assert "dask: disconnected" in card[:600] and "cannot reach the Dask scheduler" in card[:600]


async def test_the_daemons_ping_and_the_triggers_listing_name_the_executor(
    make_settings: Callable[..., Settings], cluster: Any, unreachable: str
) -> None:
    address = cluster.scheduler_address
    async with serving(make_settings(executor="dask", dask_address=address)) as served:
        with anyio.fail_after(30):
            await _until_connected(served.engine)
        executor = (await DaemonControl(served.engine, served.api)._op_ping({}))["executor"]
    assert executor_text(executor) == f"executor: dask, 1 workers at {address}"
    away = {"kind": "dask", "connected": False, "detail": f"cannot reach {unreachable}"}
    assert executor_text(away) == f"executor: dask, disconnected: cannot reach {unreachable}"


async def test_tries_waiting_for_dask_say_so_once_each_and_the_daemon_once(
    make_settings: Callable[..., Settings],
    unreachable: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    dag = DagFile(tmp_path, "@task\ndef noop():\n    return 1\n")
    settings = make_settings(executor="dask", dask_address=unreachable)
    async with DaskExecutor.open(settings, state_identity=str(tmp_path)) as executor:
        with anyio.fail_after(30):
            async with anyio.create_task_group() as group:
                for try_number in (1, 2, 3):
                    job = dag.job("noop", try_number=try_number)
                    group.start_soon(executor.execute, job, dag.task("noop"))
                logs = [dag.log_path("noop", n) for n in (1, 2, 3)]
                await _until_said(logs, "waiting for Dask")
                group.cancel_scope.cancel()
    assert all(p.read_text().count("waiting for Dask") == 1 for p in logs)
    said = [r for r in caplog.records if "tries bound for Dask wait" in r.getMessage()]
    assert len(said) == 1
