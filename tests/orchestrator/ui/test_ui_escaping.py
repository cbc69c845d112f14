"""Whatever users put in (task ids, conf, events, triggers, errors, params) is shown as text.

A DAG id cannot hold markup (letters, digits, `_-.` only), but a task id can hold anything
but `/`, `\\` and NUL; conf, event payloads, dedup keys, trigger kwargs, error messages,
descriptions and params defaults are free text. Each gets both payloads below, every page is
rendered, and neither payload may come back as markup: only escaped.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from startkit import until
from uikit import UiServed, ui_serving

from orchestrator import DAG, task
from orchestrator.config import Settings
from orchestrator.loading.dagbag import load_dag_bag
from orchestrator.store.base import WriteBatch
from orchestrator.store.records import EventRecord, RunSourceRecord, TriggerRecord

SCRIPT = "<script>alert(1)</script>"
IMG = '"><img src=x onerror=alert(1)>'
#: What must never reach a page unescaped (the pages' own <script src=...> tags are fine).
MARKUP = ("<script>alert", "<img src=x", "onerror=alert(1)>")
TASK_IDS = (IMG, "<script>alert(1)")  # a task id cannot hold "/", so not SCRIPT itself


def hostile_dag() -> DAG:
    with DAG(
        "xss",
        description=f"described as {SCRIPT} {IMG}",
        params={"name": SCRIPT, "other": IMG, IMG: 1},
        tags=(SCRIPT,),
    ) as dag:

        @task(task_id=TASK_IDS[0])
        def first() -> str:
            return SCRIPT

        @task(task_id=TASK_IDS[1])
        def second(value: str) -> None:
            raise ValueError(f"failed on {SCRIPT} {IMG}")

        second(first())
    return dag


def assert_escaped(path: str, answer: httpx.Response) -> None:
    for marker in MARKUP:
        assert marker not in answer.text, (path, marker, _around(answer.text, marker))


def _around(text: str, marker: str) -> str:
    at = text.find(marker)
    return text[max(0, at - 200) : at + 200]


async def seed_hostile_data(served: UiServed, tmp_path: Path) -> str:
    """A failed run of `xss` with hostile conf, and hostile events, triggers and errors."""
    engine = served.engine
    run_id = await engine.trigger("xss", {"x": SCRIPT, SCRIPT: IMG}, dedup_key=SCRIPT)

    async def finished() -> bool:
        run = await engine.store.get_run(run_id)
        return run is not None and run.state.finished

    await until(finished)
    now = engine.clock.now()
    batch = WriteBatch()
    batch.add_events(
        [
            EventRecord(
                dag_id="xss",
                dedup_key=key,
                payload={"path": SCRIPT, "name": IMG},
                received_at=now,
                source=SCRIPT,
                run_id=run_id,
            )
            for key in (IMG, f"{SCRIPT}-2")
        ]
    )
    batch.add_trigger(
        TriggerRecord(
            run_id=run_id,
            task_id=TASK_IDS[0],
            map_index=-1,
            classpath=f"triggers.file.{IMG}",
            kwargs={"path": SCRIPT, "url": IMG},
            created_at=now,
        )
    )
    batch.put_run_source(
        RunSourceRecord(
            dag_id="xss",
            source=f"FileTrigger({SCRIPT})",
            classpath="triggers.file.FileTrigger",
            kwargs={"directory": SCRIPT, "pattern": IMG},
            armed_at=now,
            error=f"cannot watch {SCRIPT} {IMG}",
        )
    )
    await engine.store.commit(batch)
    folder = tmp_path / "hostile-dags"
    folder.mkdir()
    (folder / "broken.py").write_text(f"raise ValueError({SCRIPT + IMG!r})\n")
    engine.dagbag.errors.extend(load_dag_bag(folder).errors)
    logging.getLogger("orchestrator.test").error("the last error was %s %s", SCRIPT, IMG)
    return run_id


async def test_hostile_text_is_escaped_on_every_page(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    async with ui_serving(make_settings(), hostile_dag()) as served:
        run_id = await seed_hostile_data(served, tmp_path)
        browser = await served.signed_in()
        shown: dict[str, str] = {}
        for path, params in pages(run_id):
            answer = await browser.get(path, params=params)
            assert answer.status_code in (200, 400, 404), (path, answer.status_code)
            assert_escaped(path, answer)
            shown[f"{path}?{params}"] = answer.text
    everything = "\n".join(shown.values())
    # The payloads did reach the pages, as text: the checks above were not vacuous.
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in everything
    assert "&#34;&gt;&lt;img src=x onerror=alert(1)&gt;" in everything
    for where in ("/dags", "/events", "/triggers", "/", "/dags/xss", "/dags/xss/trigger"):
        assert "&lt;script&gt;alert(1)" in shown[f"{where}?{{}}"], where


def pages(run_id: str) -> list[tuple[str, dict[str, Any]]]:
    return [
        ("/", {}),
        ("/dags", {}),
        ("/dags/xss", {}),
        ("/dags/xss", {"runs": 100, "before": SCRIPT}),
        ("/dags/xss/graph", {}),
        ("/dags/xss/graph", {"run": run_id}),
        ("/dags/xss/graph", {"run": SCRIPT}),
        ("/dags/xss/source", {}),
        ("/dags/xss/trigger", {}),
        ("/triggers", {}),
        ("/events", {}),
        ("/events", {"dag_id": SCRIPT, "run_id": IMG}),
        ("/events", {"dag_id": "xss", "run_id": run_id}),
        ("/login", {"next": f"/{SCRIPT}"}),
        ("/dags/xss", {"runs": SCRIPT}),
    ]


async def test_a_try_log_streamed_live_is_escaped(make_settings: Callable[..., Settings]) -> None:
    async with ui_serving(make_settings(), hostile_dag()) as served:
        engine = served.engine
        run_id = await engine.trigger("xss", {})

        async def tries() -> list[Any]:
            found = await engine.store.list_run_tries(run_id)
            return [t for t in found if t.ended_at is not None and t.task_id == TASK_IDS[1]]

        (attempt,) = await until(tries)
        with Path(attempt.log_path).open("a") as log:
            log.write(f"{SCRIPT}\n{IMG}\n")
        browser = await served.signed_in()
        params = {"run_id": run_id, "task_id": TASK_IDS[1], "offset": 0}
        logged = []
        async with browser.stream("GET", "/ui/stream", params=params) as answer:
            assert answer.status_code == 200
            async for line in answer.aiter_lines():
                if line == "event: log-end":
                    break
                logged.append(line)
    text = "\n".join(logged)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert all(marker not in text for marker in MARKUP)


async def test_hostile_and_traversing_path_parameters_get_an_escaped_404(
    make_settings: Callable[..., Settings],
) -> None:
    async with ui_serving(make_settings(), hostile_dag()) as served:
        browser = await served.signed_in()
        for path in (
            "/dags/..%2F..%2Fetc",
            "/dags/..%2F..%2Fetc%2Fpasswd/source",
            "/dags/%3Cscript%3Ealert(1)%3C%2Fscript%3E",
            "/dags/%22%3E%3Cimg%20src=x%20onerror=alert(1)%3E",
            "/dags/%22%3E%3Cimg%20src=x%20onerror=alert(1)%3E/graph",
            "/events/%3Cscript%3E",
        ):
            answer = await browser.get(path)
            assert answer.status_code == 404, (path, answer.status_code)
            assert_escaped(path, answer)
            assert "root:" not in answer.text
        named = await browser.get("/dags/%3Cscript%3Ealert(1)")
        assert named.status_code == 404
        assert "no DAG with id &#39;&lt;script&gt;alert(1)&#39;" in named.text
