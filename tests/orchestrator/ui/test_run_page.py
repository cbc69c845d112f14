"""The run page and a try's log, against a real engine and a real server (uikit)."""

from __future__ import annotations

import html
import re
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import parse_qs, quote, urlsplit

import anyio
from triggerkit import GateTrigger, open_gate
from uikit import Event, UiServed, events_of, ui_serving

from orchestrator import DAG, task
from orchestrator.authoring.defer import Defer
from orchestrator.config import Settings
from orchestrator.state import RunState, TaskState
from orchestrator.store.base import WriteBatch
from orchestrator.store.records import RunRecord, TaskInstanceRecord, TryRecord
from orchestrator.ui.run_log import TAIL_BYTES

SettingsFactory = Callable[..., Settings]

_STREAM_URL = re.compile(r'sse-connect="([^"]*)"')
_LOG_TEXT = re.compile(r'<pre id="log-text"[^>]*>(.*?)</pre>', re.DOTALL)


def pipeline() -> DAG:
    with DAG("pipeline") as dag:

        @task(in_process=True)
        def extract() -> int:
            print("extracted 3 rows")
            return 3

        @task(in_process=True)
        def load(rows: int) -> str:
            return f"loaded {rows} <rows>"

        load(extract())
    return dag


async def finished_run(served: UiServed, dag_id: str) -> str:
    run_id = await served.engine.trigger(dag_id)
    with anyio.fail_after(15):
        await served.engine.wait(run_id)
    return run_id


async def until(served: UiServed, check: Callable[[], Awaitable[bool]]) -> None:
    """Wait (on the engine's change feed, with a deadline) until `await check()` is true."""
    with anyio.fail_after(15):
        async with served.engine.subscribe() as changes:
            while not await check():
                await changes.receive()


def stream_url(page: str) -> str:
    found = _STREAM_URL.search(page)
    assert found is not None
    return html.unescape(found.group(1))


def log_text(page: str) -> str:
    found = _LOG_TEXT.search(page)
    assert found is not None
    return html.unescape(found.group(1))


async def test_a_finished_run_lists_its_tasks_states_results_and_a_timeline_row_each(
    make_settings: SettingsFactory,
) -> None:
    async with ui_serving(make_settings(), pipeline()) as served:
        run_id = await finished_run(served, "pipeline")
        page = await served.browser.get(f"/runs/{run_id}")
        missing = await served.browser.get("/runs/no-such-run")
        # The page's Clear form, as a browser sends it (downstream unticked: only `load`).
        cleared = await served.browser.post(
            f"/runs/{run_id}/tasks/load/clear", data={"csrf": served.csrf}
        )
        with anyio.fail_after(15):
            await served.engine.wait(run_id)
        tries = await served.engine.store.list_tries(run_id, "load")
        extract_tries = await served.engine.store.list_tries(run_id, "extract")

    assert page.status_code == 200
    body = page.text
    for task_id in ("extract", "load"):
        row = body.split(f'<tr data-task="{task_id}"', 1)[1].split("</tr>", 1)[0]
        assert "state-success" in row and "1/1" in row
        assert f'href="/runs/{run_id}?task={task_id}&amp;map_index=-1&amp;try=1#log"' in row
    assert "&#34;loaded 3 &lt;rows&gt;&#34;" in body  # the stored JSON, escaped
    assert 'href="/dags/pipeline"' in body and 'id="cancel-run"' not in body  # it ended
    assert body.count('<g class="bar-row"') == 2 and '<svg id="timeline"' in body
    assert "style=" not in body.lower()
    assert 'hx-get="/runs/' in body and 'hx-trigger="sse:change"' in body
    assert urlsplit(stream_url(body)).path == "/ui/stream"
    assert missing.status_code == 404 and "no-such-run" in missing.text
    assert cleared.status_code == 303 and cleared.headers["location"] == f"/runs/{run_id}"
    assert len(tries) == 2 and len(extract_tries) == 1


async def test_an_ended_trys_log_is_shown_whole_and_not_followed(
    make_settings: SettingsFactory,
) -> None:
    async with ui_serving(make_settings(), pipeline()) as served:
        run_id = await finished_run(served, "pipeline")
        page = await served.browser.get(f"/runs/{run_id}?task=extract&try=1")

    assert log_text(page.text) == "extracted 3 rows\n"
    assert '<span id="log-state">ended</span>' in page.text
    stream = urlsplit(stream_url(page.text))
    assert (stream.path, parse_qs(stream.query).keys()) == ("/ui/stream", {"since"})  # no log
    assert 'id="log-cut"' not in page.text
    live = page.text.split('<div id="live"', 1)[1]
    assert live.index('<section class="card" id="log">') > live.index("</svg>\n</div>")


async def test_a_deferred_task_shows_its_trigger_since_when_and_its_timeout(
    make_settings: SettingsFactory,
) -> None:
    with DAG("remote") as dag:

        @task(in_process=True)
        def submit() -> Defer:
            return Defer(GateTrigger(name="job-7"), timeout=3600)

        submit()

    async with ui_serving(make_settings(), dag) as served:
        run_id = await served.engine.trigger("remote")

        async def deferred() -> bool:
            return bool(await served.engine.store.list_triggers())

        await until(served, deferred)
        page = await served.browser.get(f"/runs/{run_id}")
        open_gate("job-7", {"done": True})
        await served.engine.wait(run_id)

    row = page.text.split('<tr data-task="submit"', 1)[1].split("</tr>", 1)[0]
    assert "state-deferred" in row
    assert ">GateTrigger<" in row and "name=&#34;job-7&#34;" in row
    assert "triggerkit.GateTrigger" in row  # the whole classpath, as a tooltip
    assert "times out <time" in row and "in 59 m" in row
    assert 'id="cancel-run"' in page.text and 'data-confirm="Cancel run' in page.text


async def test_a_large_log_downloads_whole_and_the_panel_shows_its_last_64_kib(
    make_settings: SettingsFactory,
) -> None:
    line = "x" * 1023
    with DAG("chatty") as dag:

        @task(in_process=True)
        def talk() -> None:
            for number in range(5 * 1024):
                print(f"{number:06d}{line[6:]}")
            print("the very end")

        talk()

    async with ui_serving(make_settings(), dag) as served:
        run_id = await finished_run(served, "chatty")
        (attempt,) = await served.engine.store.list_tries(run_id, "talk")
        on_disk = Path(attempt.log_path).read_bytes()
        download = await served.browser.get(f"/runs/{run_id}/tasks/talk/log?try=1")
        page = await served.browser.get(f"/runs/{run_id}?task=talk")
        no_try = await served.browser.get(f"/runs/{run_id}/tasks/talk/log?try=2")
        no_task = await served.browser.get(f"/runs/{run_id}/tasks/nope/log")

    assert len(on_disk) > 5_000_000
    assert download.status_code == 200 and download.content == on_disk
    assert download.headers["content-disposition"].startswith("attachment;")
    assert download.headers["content-type"] == "text/plain; charset=utf-8"
    shown = log_text(page.text)
    assert shown.endswith("the very end\n") and len(shown.encode()) <= TAIL_BYTES
    assert shown.startswith("00")  # from a line's start, not mid-line
    assert "The log is 5.0 MiB" in page.text
    assert f'href="/runs/{run_id}/tasks/talk/log?map_index=-1&amp;try=1" download' in page.text
    assert no_try.status_code == 404 and no_task.status_code == 404


async def test_a_try_that_wrote_nothing_downloads_an_empty_log(
    make_settings: SettingsFactory,
) -> None:
    async with ui_serving(make_settings(), pipeline()) as served:
        run_id = await finished_run(served, "pipeline")
        (attempt,) = await served.engine.store.list_tries(run_id, "load")
        download = await served.browser.get(f"/runs/{run_id}/tasks/load/log?try=1")
        page = await served.browser.get(f"/runs/{run_id}?task=load")
    assert not Path(attempt.log_path).exists()  # a log is made by its first byte
    assert (download.status_code, download.content) == (200, b"")
    assert download.headers["content-disposition"].startswith("attachment;")
    assert page.status_code == 200 and log_text(page.text) == ""


async def test_ids_with_markup_and_dot_dots_are_escaped_everywhere(
    make_settings: SettingsFactory,
) -> None:
    # A run id cannot hold "/": the server routes on the decoded path (see the report).
    run_id = '"><script>alert(1)<..'
    task_id = "<script>alert(2)</script>../..%2F"
    async with ui_serving(make_settings(), pipeline()) as served:
        await finished_run(served, "pipeline")  # the DAG is in the store
        log_path = served.engine.settings.logs_dir / "odd" / "try-1.log"
        log_path.parent.mkdir(parents=True)
        log_path.write_text("<script>alert(3)</script>\n")
        await commit_run(served, run_id, task_id, log_path)
        url = f"/runs/{quote(run_id, safe='')}"
        page = await served.browser.get(url)
        panel = await served.browser.get(f"{url}?task={quote(task_id, safe='')}")
        unknown = await served.browser.get(f"/runs/{quote('<script>x<', safe='')}")

    for answer in (page, panel, unknown):
        assert "<script>alert" not in answer.text and "<script>x" not in answer.text
    assert page.status_code == 200 and "&lt;script&gt;alert(2)&lt;/script&gt;" in page.text
    assert f"/runs/{quote(run_id, safe='')}/tasks/{quote(task_id, safe='')}/clear" in page.text
    assert "&lt;script&gt;alert(3)" in panel.text  # the log's text, escaped
    assert unknown.status_code == 404 and "&lt;script&gt;x" in unknown.text


async def test_a_log_path_outside_the_logs_folder_is_never_read(
    make_settings: SettingsFactory, tmp_path: Path
) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP SECRET\n")
    async with ui_serving(make_settings(), pipeline()) as served:
        await finished_run(served, "pipeline")
        escape = served.engine.settings.logs_dir / ".." / ".." / "secret.txt"
        await commit_run(served, "forged", "t", escape)
        page = await served.browser.get("/runs/forged?task=t")
        download = await served.browser.get("/runs/forged/tasks/t/log")

    assert "TOP SECRET" not in page.text and "outside the logs folder" in page.text
    assert 'id="log-text"' not in page.text
    assert download.status_code == 403 and "TOP SECRET" not in download.text


async def commit_run(served: UiServed, run_id: str, task_id: str, log_path: Path) -> None:
    """A finished run with one task and one try, written to the store as given."""
    now = served.engine.clock.now()
    batch = WriteBatch()
    batch.create_run(
        RunRecord(run_id=run_id, dag_id="pipeline", state=RunState.SUCCESS, conf={}, queued_at=now),
        [TaskInstanceRecord(run_id=run_id, task_id=task_id, state=TaskState.SUCCESS, try_number=1)],
    )
    batch.start_try(
        TryRecord(
            run_id=run_id,
            task_id=task_id,
            map_index=-1,
            try_number=1,
            state=TaskState.SUCCESS,
            started_at=now,
            ended_at=now,
            log_path=str(log_path),
        )
    )
    await served.engine.store.commit(batch)


@contextmanager
def released(*gates: threading.Event) -> Iterator[None]:
    """Open every gate on the way out, so a failed test does not leave a task thread blocked."""
    try:
        yield
    finally:
        for gate in gates:
            gate.set()


async def test_a_running_trys_log_streams_live_and_resumes_from_the_last_event_id(
    make_settings: SettingsFactory,
) -> None:
    second, third = threading.Event(), threading.Event()
    with DAG("slow") as dag:

        @task(in_process=True)
        def work() -> None:
            print("first", flush=True)
            second.wait(30)
            print("second", flush=True)
            third.wait(30)
            print("third", flush=True)

        work()

    with released(second, third):
        async with ui_serving(make_settings(), dag) as served:
            run_id = await served.engine.trigger("slow")

            async def started() -> bool:
                return bool(await served.engine.store.list_tries(run_id, "work"))

            await until(served, started)
            follow = f"/ui/stream?run_id={run_id}&task_id=work&try=1&offset=0"
            with anyio.fail_after(15):
                async with served.browser.stream("GET", follow) as response:
                    assert response.status_code == 200
                    events = events_of(response)
                    seen = await logs_until(events, "first\n")
                    second.set()
                    seen += await logs_until(events, "second\n", seen)
            # The task now waits on `third`: its log stands still while the page is read.
            (attempt,) = await served.engine.store.list_tries(run_id, "work")
            size = Path(attempt.log_path).stat().st_size
            page = await served.browser.get(f"/runs/{run_id}?task=work")
            so_far = await served.browser.get(f"/runs/{run_id}/tasks/work/log")
            with anyio.fail_after(15):
                headers = {"Last-Event-ID": seen[-1][0]}
                async with served.browser.stream("GET", follow, headers=headers) as response:
                    third.set()
                    resumed = await logs_until(events_of(response), "ended")
            await served.engine.wait(run_id)

    ids = [int(event_id) for event_id, _ in seen]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert "".join(text for _, text in seen) == "first\nsecond\n"
    assert "".join(text for _, text in resumed[:-1]) == "third\n"  # nothing twice
    assert resumed[-1] == ("end", "ended")
    assert log_text(page.text) == "first\nsecond\n" and '<span id="log-state">running' in page.text
    query = parse_qs(urlsplit(stream_url(page.text)).query)
    assert query.pop("since")[0].isdigit()
    assert query == {
        "run_id": [run_id],
        "task_id": ["work"],
        "map_index": ["-1"],
        "try": ["1"],
        "offset": [str(size)],
    }
    assert 'id="log-follow" checked' in page.text
    # A running try downloads as it was when asked, though it goes on growing.
    assert so_far.content == b"first\nsecond\n"
    assert so_far.headers["content-disposition"].startswith("attachment;")


async def logs_until(
    events: AsyncIterator[Event], marker: str, before: list[tuple[str, str]] | None = None
) -> list[tuple[str, str]]:
    """`log` events (id, text) until the text so far holds `marker`; `log-end` as ("end", …).

    A `log` event may carry several writes at once, so the text read so far (`before` and
    these) is what is looked at, not one event's.
    """
    text = "".join(data for _, data in before or [])
    found: list[tuple[str, str]] = []
    async for event in events:
        if event.kind == "log":
            found.append((event.id, html.unescape(event.data)))
            text += found[-1][1]
        elif event.kind == "log-end":
            found.append(("end", event.data))
            text += event.data
        if marker in text:
            break
    return found
