"""A clean stop lets the delivery under way finish and records it: no repeat after a restart.

The sender was cancelled with the daemon's task group, in the middle of a request: the
receiver had the message, the outbox still said `pending`, and the next start sent it again.
(A crash still may: delivery is at least once, and each message carries its alert's id.)
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import anyio
from alertkit import alerts_of, sending, slack_settings
from httpserver import Reply, serve
from startkit import starting_engine, until_true

from orchestrator import DAG, task
from orchestrator.alertconfig import AlertRule
from orchestrator.config import Settings
from orchestrator.state import RunState

SettingsFactory = Callable[..., Settings]


def failing_dag() -> DAG:
    @task(in_process=True)
    def load() -> None:
        raise RuntimeError("the table is empty")

    with DAG("nightly") as dag:
        load()
    return dag


async def test_a_stop_waits_for_the_answer_to_a_message_under_way_and_records_it(
    make_settings: SettingsFactory,
) -> None:
    settings = slack_settings(make_settings, AlertRule(on=("task_failed",), channels=("ops",)))
    answer = threading.Event()  # the receiver holds its answer until the stop has begun
    stopping = anyio.Event()

    async def answer_once_stopping() -> None:
        await stopping.wait()
        await anyio.lowlevel.checkpoint()  # the stop's cancellation reaches the sender first
        answer.set()

    with serve() as http:
        http.script("/slack", Reply(body=b"ok", hold=answer))
        async with starting_engine(settings, failing_dag()) as engine:
            async with anyio.create_task_group() as helpers:
                helpers.start_soon(answer_once_stopping)
                async with sending(engine, f"{http.url}/slack"):
                    run_id = await engine.trigger("nightly")
                    with anyio.fail_after(20):
                        assert (await engine.wait(run_id)).state is RunState.FAILED
                    await until_true(lambda: http.hits("/slack") == 1)  # sent, not answered
                    stopping.set()
            [alert] = await alerts_of(engine, "task_failed")
        assert http.hits("/slack") == 1
    assert alert.state == "sent" and alert.sent_at is not None
