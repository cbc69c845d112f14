"""The change feed: every committed state change, to whoever listens (displays, the API).

A change is sent only after the store committed it, so a listener never sees a state that a
crash could take back. Streams are unbounded: the engine never waits for a slow listener.
A `listen` callback is called in the engine's step itself, for bookkeeping that must keep
up with every change and never wait (the metrics' counters): it must be quick and not raise.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from orchestrator.changes import Change


class ChangeFeed:
    """Fans committed changes out to every subscriber's stream."""

    def __init__(self) -> None:
        self._subscribers: list[MemoryObjectSendStream[Change]] = []
        self._listeners: list[Callable[[Change], None]] = []
        #: How many changes were published so far: a listener that saw `n` and subscribes
        #: later knows it missed some when this has moved on.
        self.published = 0

    @asynccontextmanager
    async def subscribe(self) -> AsyncIterator[MemoryObjectReceiveStream[Change]]:
        """A stream of every state change from now on, each sent after it committed."""
        send, receive = anyio.create_memory_object_stream[Change](math.inf)
        self._subscribers.append(send)
        try:
            async with receive:
                yield receive
        finally:
            self._subscribers.remove(send)
            send.close()

    def listen(self, callback: Callable[[Change], None]) -> Callable[[], None]:
        """Call `callback` with every change from now on, as it is published; returns `stop`."""
        self._listeners.append(callback)
        return lambda: self._listeners.remove(callback)

    @property
    def listening(self) -> int:
        """How many subscribers are listening now."""
        return len(self._subscribers)

    def publish(self, changes: Iterable[Change]) -> None:
        listeners, subscribers = self._listeners, self._subscribers  # the lists, not copies
        for change in changes:
            self.published += 1
            for callback in listeners:
                callback(change)
            for subscriber in subscribers:
                subscriber.send_nowait(change)
