"""Threads for sync tasks run in the engine process: one hand-off each way, reused threads.

`anyio.to_thread.run_sync` yields to the event loop twice before it hands a call over (its
checkpoint, then its capacity limiter's), so each in-process try paid two loop iterations
and about 45 µs more than the hand-off itself. Here a call goes straight onto an idle thread's
queue, and its outcome comes back through the loop's `call_soon_threadsafe`.

Like anyio with `abandon_on_cancel`: a caller that stops waiting (a timeout, a cancel) abandons
the call, which goes on until the task's code returns by itself; its thread then rejoins the
idle ones. The call sees a copy of the caller's context variables (the try's log, the task
context). `close` stops the idle threads and each busy one once its call returns.
"""

from __future__ import annotations

import asyncio
import contextvars
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import anyio

Result = TypeVar("Result")

# What a thread is handed: where the outcome goes (on its loop), the caller's context and the
# call; None stops the thread.
_Call = tuple["asyncio.Future[Any]", contextvars.Context, Callable[[], Any]]


class TaskThreads:
    """At most `limit` calls waited for at once; threads started as needed and reused."""

    def __init__(self, limit: int) -> None:
        self._limiter = anyio.CapacityLimiter(limit)
        self._idle: list[_TaskThread] = []
        self._threads: set[_TaskThread] = set()
        self._closed = False

    @property
    def threads(self) -> int:
        """Threads alive: idle, busy, or running an abandoned call."""
        return len(self._threads)

    async def run(self, call: Callable[[], Result]) -> Result:
        """Run `call` in a thread of the pool and return (or raise) what it did."""
        if self._closed:
            raise RuntimeError("the task threads are closed")
        try:
            self._limiter.acquire_nowait()  # a free token needs no trip around the loop
        except anyio.WouldBlock:
            await self._limiter.acquire()
        try:
            future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
            thread = self._idle.pop() if self._idle else self._start_thread()
            thread.hand(future, call)
            return await future
        finally:
            self._limiter.release()

    def close(self) -> None:
        """Stop every thread once it is idle; abandoned calls still run to their end."""
        self._closed = True
        for thread in list(self._threads):
            thread.stop()
        self._idle.clear()

    def _start_thread(self) -> _TaskThread:
        thread = _TaskThread(self)
        self._threads.add(thread)
        thread.start()
        return thread

    def _rejoin(self, thread: _TaskThread) -> None:
        """In the loop: the thread's call returned; it waits for the next one."""
        if not self._closed:
            self._idle.append(thread)


class _TaskThread(threading.Thread):
    def __init__(self, pool: TaskThreads) -> None:
        # A daemon: an abandoned call that never returns must not keep the process alive.
        super().__init__(name="orchestrator task thread", daemon=True)
        self._pool = pool
        self._calls: queue.SimpleQueue[_Call | None] = queue.SimpleQueue()

    def hand(self, future: asyncio.Future[Any], call: Callable[[], Any]) -> None:
        self._calls.put((future, contextvars.copy_context(), call))

    def stop(self) -> None:
        self._calls.put(None)

    def run(self) -> None:
        try:
            while (item := self._calls.get()) is not None:
                future, context, call = item
                try:
                    outcome: tuple[bool, Any] = (True, context.run(call))
                except BaseException as error:
                    outcome = (False, error)
                try:
                    future.get_loop().call_soon_threadsafe(self._answer, future, outcome)
                except RuntimeError:
                    return  # the loop is closed: nobody waits any more
        finally:
            self._pool._threads.discard(self)

    def _answer(self, future: asyncio.Future[Any], outcome: tuple[bool, Any]) -> None:
        self._pool._rejoin(self)
        if future.done():  # its caller stopped waiting: the call was abandoned
            return
        succeeded, value = outcome
        if succeeded:
            future.set_result(value)
        else:
            future.set_exception(value)
