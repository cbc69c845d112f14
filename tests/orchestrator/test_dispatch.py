"""The dispatcher: in-process sync tries run without a task of their own, and still end with
the engine."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

import anyio
import anyio.to_thread

from helpers import bag_of
from orchestrator import DAG, task
from orchestrator.config import Settings
from orchestrator.scheduling.engine import Engine
from orchestrator.state import TaskState


def timers_of_tries() -> list[asyncio.TimerHandle]:
    """The loop's pending timers that would time out a try started without a task."""
    loop = asyncio.get_running_loop()
    scheduled: list[asyncio.TimerHandle] = loop._scheduled  # type: ignore[attr-defined]
    return [
        handle
        for handle in scheduled
        if not handle.cancelled()
        and "start_in_thread" in getattr(handle._callback, "__qualname__", "")  # type: ignore[attr-defined]
    ]


async def test_closing_the_engine_stops_a_running_in_process_try(
    make_settings: Callable[..., Settings],
) -> None:
    started, release = threading.Event(), threading.Event()

    @task(execution_timeout=3600)
    def block() -> None:
        started.set()
        release.wait(60)

    with DAG("blocking") as dag:
        block()
    async with Engine.open(make_settings(), dagbag=bag_of(dag)) as engine:
        run_id = await engine.trigger("blocking")
        await anyio.to_thread.run_sync(started.wait, 30)
        assert len(timers_of_tries()) == 1  # the try's timeout is set
        instances = await engine.store.list_task_instances(run_id)
        assert [ti.state for ti in instances] == [TaskState.RUNNING]
    # The engine is gone: its try was abandoned with it, and will not time out later.
    assert timers_of_tries() == []
    release.set()
