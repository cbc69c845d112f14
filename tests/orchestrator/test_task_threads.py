"""Task threads: in-process sync tries hand their call to a reused thread, and may abandon it."""

from __future__ import annotations

import contextvars
import threading

import anyio
import pytest

from orchestrator.execution.task_threads import TaskThreads

_VALUE: contextvars.ContextVar[str] = contextvars.ContextVar("value", default="unset")


async def test_calls_one_after_the_other_reuse_one_thread() -> None:
    threads = TaskThreads(2)
    try:
        first = await threads.run(threading.current_thread)
        second = await threads.run(threading.current_thread)
        assert first is second and first is not threading.current_thread()
        assert threads.threads == 1
    finally:
        threads.close()


async def test_the_call_sees_the_callers_context_and_its_error_reaches_the_caller() -> None:
    def fail() -> None:
        raise ValueError(f"boom in {_VALUE.get()}")

    threads = TaskThreads(1)
    try:
        _VALUE.set("the try")
        assert await threads.run(_VALUE.get) == "the try"
        with pytest.raises(ValueError, match="boom in the try"):
            await threads.run(fail)
    finally:
        threads.close()


async def test_a_caller_that_stops_waiting_abandons_the_call_which_runs_to_its_end() -> None:
    threads = TaskThreads(2)
    started, release = threading.Event(), threading.Event()
    ran: list[threading.Thread] = []
    stopped: list[str] = []

    def slow() -> str:
        ran.append(threading.current_thread())
        started.set()
        release.wait()
        return "late"

    async def caller(scope: anyio.CancelScope) -> None:
        with scope:
            await threads.run(slow)
        stopped.append("stopped waiting")

    scope = anyio.CancelScope()
    async with anyio.create_task_group() as task_group:
        task_group.start_soon(caller, scope)
        await anyio.to_thread.run_sync(started.wait)
        scope.cancel()
    assert stopped == ["stopped waiting"]
    other = await threads.run(threading.current_thread)  # the busy thread is not handed it
    assert other is not ran[0] and threads.threads == 2
    release.set()
    threads.close()
    for thread in (ran[0], other):
        await anyio.to_thread.run_sync(thread.join, 10)
        assert not thread.is_alive()
    assert threads.threads == 0
    with pytest.raises(RuntimeError, match="closed"):
        await threads.run(threading.current_thread)


async def test_a_call_started_without_a_task_is_answered_in_the_loop() -> None:
    threads = TaskThreads(1)
    answers: list[tuple[bool, object]] = []
    answered = anyio.Event()

    def deliver(answer: tuple[bool, object]) -> None:
        answers.append(answer)
        answered.set()

    try:
        _VALUE.set("the try")
        assert threads.start(_VALUE.get, deliver) is not None
        assert threads.start(_VALUE.get, deliver) is None  # the one call allowed is running
        await answered.wait()
        assert answers == [(True, "the try")]
        assert threads.start(_VALUE.get, deliver) is not None  # the answer freed the token
    finally:
        threads.close()


async def test_an_abandoned_call_is_never_answered_and_frees_its_token_at_once() -> None:
    threads = TaskThreads(1)
    release = threading.Event()
    ran: list[threading.Thread] = []
    late: list[tuple[bool, object]] = []
    answers: list[tuple[bool, object]] = []
    answered = anyio.Event()

    def blocked() -> None:
        ran.append(threading.current_thread())
        release.wait(30)

    def deliver(answer: tuple[bool, object]) -> None:
        answers.append(answer)
        answered.set()

    abandon = threads.start(blocked, late.append)
    assert abandon is not None
    abandon()
    assert threads.start(threading.current_thread, deliver) is not None
    await answered.wait()
    assert answers[0][1] is not ran[0]
    release.set()
    threads.close()
    # The thread handed its answer to the loop before it stopped: the answer went to nobody.
    await anyio.to_thread.run_sync(ran[0].join, 30)
    assert not ran[0].is_alive() and late == []
