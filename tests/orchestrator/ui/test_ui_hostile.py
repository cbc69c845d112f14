"""Clients that push: too many live streams, a thousand of them at once, a page left open
through 10,000 changes, a DAG of 2,000 tasks, a task log of a gigabyte.

Nothing here is measured by time: each test checks what the daemon holds (streams counted,
a change queue's length, memory traced) and that it still answers afterwards.
"""

from __future__ import annotations

import os
import tracemalloc
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack

import anyio
import httpx
from apikit import hello_dag
from startkit import until_true
from uikit import UiServed, ui_serving

from orchestrator import DAG, task
from orchestrator.changes import TaskChanged
from orchestrator.config import Settings
from orchestrator.state import RunState, TaskState
from orchestrator.store.base import WriteBatch
from orchestrator.store.records import RunRecord, TaskInstanceRecord, TryRecord
from orchestrator.ui.graph_layout import MAX_GRAPH_NODES
from orchestrator.ui.stream import LOG_CHUNK_BYTES

CAP = 3  # ui_max_streams_per_client in these tests


def wide_dag(tasks: int) -> DAG:
    """`tasks` tasks in a binary tree: task i runs after task (i - 1) // 2."""
    with DAG("wide") as dag:
        made = []
        for number in range(tasks):

            @task(task_id=f"t{number:04d}")
            def step() -> None:
                return None

            made.append(step())
            if number:
                made[(number - 1) // 2] >> made[number]
    return dag


async def open_streams(
    stack: AsyncExitStack, browser: httpx.AsyncClient, count: int
) -> list[httpx.Response]:
    return [
        await stack.enter_async_context(browser.stream("GET", "/ui/stream")) for _ in range(count)
    ]


async def test_one_stream_past_the_cap_gets_a_429_and_closed_streams_give_their_place_back(
    make_settings: Callable[..., Settings],
) -> None:
    async with ui_serving(make_settings(ui_max_streams_per_client=CAP), hello_dag()) as served:
        browser = await served.signed_in()
        for _ in range(2):  # open the cap's worth, close them, and again: nothing leaks
            async with AsyncExitStack() as stack:
                streams = await open_streams(stack, browser, CAP)
                assert [s.status_code for s in streams] == [200] * CAP
                one_more = await browser.get("/ui/stream")
                assert one_more.status_code == 429
                assert one_more.headers["content-type"].startswith("text/plain")
                assert f"already has {CAP} live pages open" in one_more.text
                assert "ui_max_streams_per_client" in one_more.text
            await until_true(lambda: not served.ui.streams)


async def test_a_thousand_stream_attempts_are_all_answered_and_the_daemon_serves_on(
    make_settings: Callable[..., Settings],
) -> None:
    async with ui_serving(make_settings(ui_max_streams_per_client=CAP), hello_dag()) as served:
        browser = await served.signed_in()
        statuses: list[int] = []
        limiter = anyio.CapacityLimiter(25)

        async def attempt() -> None:
            async with limiter:
                statuses.append((await browser.get("/ui/stream")).status_code)

        async with AsyncExitStack() as stack:
            await open_streams(stack, browser, CAP)
            async with anyio.create_task_group() as group:
                for _ in range(1000):
                    group.start_soon(attempt)
            assert statuses == [429] * 1000
            assert served.ui.streams == {next(iter(served.ui.streams)): CAP}
            health = await browser.get("/api/v1/health")
            home = await browser.get("/")
            assert (health.status_code, home.status_code) == (200, 200)
        await until_true(lambda: not served.ui.streams)
        assert (await browser.get("/dags")).status_code == 200


async def test_a_page_left_open_through_10000_changes_holds_no_queue(
    make_settings: Callable[..., Settings],
) -> None:
    async with ui_serving(make_settings(), hello_dag()) as served:
        feed = served.engine.feed
        before = feed.listening
        browser = await served.signed_in()
        async with browser.stream("GET", "/ui/stream") as live:  # and never read
            assert live.status_code == 200
            await until_true(lambda: feed.listening == before + 1)
            queue = feed._subscribers[-1]  # the page's: the newest subscriber
            longest = 0
            for batch in range(100):
                feed.publish(changes(served, batch, 100))
                longest = max(longest, queue.statistics().current_buffer_used)
                await until_true(lambda: queue.statistics().current_buffer_used == 0)
            assert longest <= 100  # never more than one batch waits: the page drains as it comes
            assert feed.listening == before + 1
        await until_true(lambda: feed.listening == before)


def changes(served: UiServed, batch: int, count: int) -> list[TaskChanged]:
    at = served.engine.clock.now()
    return [
        TaskChanged(
            run_id=f"run-{batch}",
            dag_id="hello",
            task_id=f"task-{number}",
            map_index=-1,
            state=TaskState.SUCCESS,
            try_number=1,
            at=at,
        )
        for number in range(count)
    ]


async def test_a_dag_of_2000_tasks_is_listed_not_drawn_and_its_grid_answers(
    make_settings: Callable[..., Settings],
) -> None:
    dag = wide_dag(2000)
    async with ui_serving(make_settings(), dag) as served:
        now = served.engine.clock.now()
        batch = WriteBatch()
        run = RunRecord(
            run_id="wide-1",
            dag_id="wide",
            state=RunState.SUCCESS,
            conf={},
            queued_at=now,
            started_at=now,
            ended_at=now,
        )
        batch.create_run(
            run,
            [
                TaskInstanceRecord(run_id="wide-1", task_id=task_id, state=TaskState.SUCCESS)
                for task_id in dag.tasks
            ],
        )
        await served.engine.store.commit(batch)
        browser = await served.signed_in()
        graph = await browser.get("/dags/wide/graph")
        assert graph.status_code == 200
        assert f"This DAG has 2000 tasks, more than the {MAX_GRAPH_NODES}" in graph.text
        assert "t1999" in graph.text
        assert "<svg" not in graph.text
        grid = await browser.get("/dags/wide")
        assert grid.status_code == 200
        assert grid.text.count('class="c-success"') == 2000


async def test_a_gigabyte_log_is_followed_from_its_last_chunk_in_little_memory(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings()
    async with ui_serving(settings, hello_dag()) as served:
        path = settings.logs_dir / "huge" / "say" / "1.log"
        path.parent.mkdir(parents=True)
        with path.open("wb") as log:
            log.truncate(2**30 - 16)  # sparse: a gigabyte on paper, nothing on disk
            log.seek(0, os.SEEK_END)
            log.write(b"the last line.\n")
        await finished_try(served, str(path))
        size = path.stat().st_size
        browser = await served.signed_in()
        params = {"run_id": "huge", "task_id": "say", "offset": 0}
        tracemalloc.start()
        try:
            async with browser.stream("GET", "/ui/stream", params=params) as answer:
                assert answer.status_code == 200
                event_id, data = await first_log_event(answer.aiter_lines())
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert int(event_id) == size
    assert f"{size - LOG_CHUNK_BYTES} bytes skipped" in data
    assert len(data.encode()) <= LOG_CHUNK_BYTES + 200
    assert data.rstrip("\n").endswith("the last line.")
    assert peak < 32 * 2**20, f"{peak / 2**20:.1f} MiB traced while following the log"


async def finished_try(served: UiServed, log_path: str) -> None:
    now = served.engine.clock.now()
    run = RunRecord(run_id="huge", dag_id="hello", state=RunState.SUCCESS, conf={}, queued_at=now)
    batch = WriteBatch()
    batch.create_run(run, [TaskInstanceRecord(run_id="huge", task_id="say")])
    attempt = TryRecord(
        run_id="huge",
        task_id="say",
        map_index=-1,
        try_number=1,
        state=TaskState.RUNNING,
        started_at=now,
        log_path=log_path,
    )
    batch.start_try(attempt)
    batch.end_try(("huge", "say", -1), 1, TaskState.SUCCESS, at=now, error=None)
    await served.engine.store.commit(batch)


async def first_log_event(lines: AsyncIterator[str]) -> tuple[str, str]:
    """The id and data of the stream's first `log` event."""
    event, event_id, data = "", "", []
    async for line in lines:
        if line.startswith("event: "):
            event = line.removeprefix("event: ")
        elif line.startswith("id: "):
            event_id = line.removeprefix("id: ")
        elif line.startswith("data: ") or line == "data:":
            data.append(line.removeprefix("data:").removeprefix(" "))
        elif not line and event == "log":
            return event_id, "\n".join(data)
        elif not line:
            event, event_id, data = "", "", []
    raise AssertionError("the stream ended before any log event")
