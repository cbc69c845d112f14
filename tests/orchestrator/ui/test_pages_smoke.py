"""Every page answers a signed-in browser, and the login link, cookies and CSRF behave."""

from __future__ import annotations

from collections.abc import Callable

from uikit import csrf_of, ui_serving

from orchestrator import DAG, task
from orchestrator.config import Settings


def hello_dag() -> DAG:
    with DAG("hello", params={"n": 3, "ratio": 0.5, "name": "x", "flag": True}) as dag:

        @task
        def say() -> str:
            return "hello"

        say()
    return dag


async def test_every_page_answers_a_signed_in_browser(
    make_settings: Callable[..., Settings],
) -> None:
    async with ui_serving(make_settings(), hello_dag()) as served:
        browser = await served.signed_in()
        for path in (
            "/",
            "/dags",
            "/dags/hello",
            "/dags/hello/graph",
            "/dags/hello/source",
            "/dags/hello/trigger",
            "/triggers",
            "/events",
        ):
            answer = await browser.get(path)
            assert answer.status_code == 200, (path, answer.text[:500])
            assert "text/html" in answer.headers["content-type"]
            assert "'unsafe-inline'" not in answer.headers["content-security-policy"]
            assert answer.headers["x-frame-options"] == "DENY"
            assert ' style="' not in answer.text, path


async def test_the_trigger_form_starts_one_run_with_typed_conf_even_when_sent_twice(
    make_settings: Callable[..., Settings],
) -> None:
    async with ui_serving(make_settings(), hello_dag()) as served:
        browser = await served.signed_in()
        form = (await browser.get("/dags/hello/trigger")).text
        fields = {
            "csrf": csrf_of(form),
            "idempotency_key": "same-click",
            "param.n": "7",
            "param.ratio": "2.5",
            "param.name": "<b>me</b>",
            "conf_json": '{"extra": [1, 2]}',
        }
        first = await browser.post("/dags/hello/trigger", data=fields)
        second = await browser.post("/dags/hello/trigger", data=fields)
        assert first.status_code == second.status_code == 303
        assert first.headers["location"] == second.headers["location"]
        runs = await served.engine.store.list_runs(dag_id="hello")
        assert len(runs) == 1
        assert runs[0].conf == {
            "n": 7,
            "ratio": 2.5,
            "name": "<b>me</b>",
            "flag": False,  # a checkbox left out of the form is unchecked
            "extra": [1, 2],
        }
        page = await browser.get(first.headers["location"])
        assert "<b>me</b>" not in page.text


async def test_a_bad_value_in_the_trigger_form_names_the_param(
    make_settings: Callable[..., Settings],
) -> None:
    async with ui_serving(make_settings(), hello_dag()) as served:
        browser = await served.signed_in()
        csrf = csrf_of((await browser.get("/dags/hello/trigger")).text)
        answer = await browser.post("/dags/hello/trigger", data={"csrf": csrf, "param.n": "x"})
        assert answer.status_code == 400
        assert "param &#39;n&#39; must be a whole number" in answer.text
        assert await served.engine.store.list_runs(dag_id="hello") == []


async def test_the_home_page_shows_failing_alert_channels_and_recent_alerts(
    make_settings: Callable[..., Settings],
) -> None:
    from orchestrator.alerts.sender import ChannelStatus
    from orchestrator.store.alertrows import AlertRecord
    from orchestrator.store.base import WriteBatch

    async with ui_serving(make_settings(), hello_dag()) as served:
        broken = ChannelStatus(
            channel="ops-slack", kind="slack", healthy=False, failures=3, last_error="HTTP 500"
        )
        served.ui.channels = lambda: [broken, ChannelStatus(channel="mail", kind="email")]
        batch = WriteBatch()
        now = served.engine.clock.now()
        batch.add_alerts(
            [
                AlertRecord(
                    alert_id="a1",
                    created_at=now,
                    event="task_failed",
                    channel="ops-slack",
                    dag_id="hello",
                    run_id="r<1>",
                    task_id="say",
                    attempts=3,
                    last_error="HTTP 500",
                )
            ]
        )
        await served.engine.store.commit(batch)
        page = (await served.browser.get("/")).text
        failing = page[page.index('id="broken-channels"') : page.index("Runs in the last 24 hours")]
        assert "ops-slack" in failing and "HTTP 500" in failing and "mail" not in failing
        recent = page[page.index('id="alerts"') :]
        assert "task_failed" in recent and "/runs/r%3C1%3E" in recent and "pending" in recent


async def test_pages_are_compressed_and_streams_and_logs_are_not(
    make_settings: Callable[..., Settings],
) -> None:
    async with ui_serving(make_settings(), hello_dag()) as served:
        page = await served.browser.get("/dags/hello/source", headers={"Accept-Encoding": "gzip"})
        assert page.headers["content-encoding"] == "gzip" and "hello" in page.text
        async with served.browser.stream(
            "GET", "/ui/stream", headers={"Accept-Encoding": "gzip"}
        ) as stream:
            assert stream.headers["content-type"].startswith("text/event-stream")
            assert "content-encoding" not in stream.headers


async def test_a_client_that_takes_no_gzip_gets_pages_as_they_are(
    make_settings: Callable[..., Settings],
) -> None:
    async with ui_serving(make_settings(), hello_dag()) as served:
        headers = {"Accept-Encoding": "identity"}
        page = await served.browser.get("/dags/hello/source", headers=headers)
        assert page.status_code == 200 and "hello" in page.text
        assert "content-encoding" not in page.headers
        assert page.headers["x-frame-options"] == "DENY"  # the other middleware still ran
