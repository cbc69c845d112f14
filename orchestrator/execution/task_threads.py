"""Threads for sync tasks run in the engine process: one hand-off each way, reused threads.

`anyio.to_thread.run_sync` yields to the event loop twice before it hands a call over (its
checkpoint, then its capacity limiter's), so each in-process try paid two loop iterations
and about 45 µs more than the hand-off itself. Here a call goes straight onto an idle thread's
queue, and its outcome comes back through the loop's `call_soon_threadsafe`.

Like anyio with `abandon_on_cancel`: a caller that stops waiting (a timeout, a cancel) abandons
the call, which goes on until the task's code returns by itself; its thread then rejoins the
idle ones. The call sees a copy of the caller's context variables (the try's log, the task
context). `close` stops the idle threads and each busy one once its call returns.

`start` hands a call over without a task to wait in: what it returned is delivered to a
callback, in the loop, in the same turn that the thread's answer arrives. A try that needs no
task of its own so saves the task, its cancel scopes and the turn of the loop in which a woken
task resumes (see `Executor.start_in_thread`).
"""

from __future__ import annotations

import asyncio
import contextvars
import queue
import threading
from collections.abc import Callable
from functools import partial
from typing import Any, TypeVar

import anyio

Result = TypeVar("Result")

#: What a call did: (True, its value) or (False, its exception).
Answer = tuple[bool, Any]
#: Called to stop waiting for a call handed over by `start`.
Abandon = Callable[[], None]
# What a thread is handed: the loop and what takes the answer there, the caller's context and
# the call; None stops the thread.
_Call = tuple[
    asyncio.AbstractEventLoop, Callable[[Answer], None], contextvars.Context, Callable[[], Any]
]


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
            loop = asyncio.get_running_loop()
            future: asyncio.Future[Result] = loop.create_future()
            self._hand(loop, partial(_settle, future), call)
            return await future
        finally:
            self._limiter.release()

    def start(self, call: Callable[[], Any], deliver: Callable[[Answer], None]) -> Abandon | None:
        """Hand `call` to a thread now, if a call may start now; None if it has to wait.

        `deliver` gets the call's `Answer` in the loop, unless the returned function was
        called before: that abandons the call (a timeout, a cancel), as a caller of `run`
        that stops waiting does.
        """
        if self._closed:
            raise RuntimeError("the task threads are closed")
        ticket = _Ticket(self._limiter, deliver)
        try:
            self._limiter.acquire_on_behalf_of_nowait(ticket)
        except anyio.WouldBlock:
            return None
        self._hand(asyncio.get_running_loop(), ticket.deliver, call)
        return ticket.abandon

    def close(self) -> None:
        """Stop every thread once it is idle; abandoned calls still run to their end."""
        self._closed = True
        for thread in list(self._threads):
            thread.stop()
        self._idle.clear()

    def _hand(
        self,
        loop: asyncio.AbstractEventLoop,
        deliver: Callable[[Answer], None],
        call: Callable[[], Any],
    ) -> None:
        thread = self._idle.pop() if self._idle else self._start_thread()
        thread.hand(loop, deliver, call)

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

    def hand(
        self,
        loop: asyncio.AbstractEventLoop,
        deliver: Callable[[Answer], None],
        call: Callable[[], Any],
    ) -> None:
        self._calls.put((loop, deliver, contextvars.copy_context(), call))

    def stop(self) -> None:
        self._calls.put(None)

    def run(self) -> None:
        try:
            while (item := self._calls.get()) is not None:
                loop, deliver, context, call = item
                try:
                    answer: Answer = (True, context.run(call))
                except BaseException as error:
                    answer = (False, error)
                try:
                    loop.call_soon_threadsafe(self._answer, deliver, answer)
                except RuntimeError:
                    return  # the loop is closed: nobody waits any more
        finally:
            self._pool._threads.discard(self)

    def _answer(self, deliver: Callable[[Answer], None], answer: Answer) -> None:
        self._pool._rejoin(self)
        deliver(answer)


class _Ticket:
    """A call handed over by `start`: holds a token of the limiter until answered or abandoned."""

    def __init__(self, limiter: anyio.CapacityLimiter, deliver: Callable[[Answer], None]) -> None:
        self._limiter = limiter
        self._deliver: Callable[[Answer], None] | None = deliver

    def deliver(self, answer: Answer) -> None:
        deliver = self._deliver
        if deliver is not None:  # else abandoned: nobody waits for the answer
            self.abandon()
            deliver(answer)

    def abandon(self) -> None:
        if self._deliver is not None:
            self._deliver = None
            self._limiter.release_on_behalf_of(self)


def _settle(future: asyncio.Future[Any], answer: Answer) -> None:
    """Give `run`'s caller the answer, unless it stopped waiting: the call was abandoned."""
    if future.done():
        return
    succeeded, value = answer
    if succeeded:
        future.set_result(value)
    else:
        future.set_exception(value)
