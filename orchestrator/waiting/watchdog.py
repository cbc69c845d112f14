"""A watchdog for the event loop: notices when something blocks it, and names who did.

Thousands of triggers share one loop, so one that calls blocking code (`time.sleep`, a sync
HTTP client, a big file read) stalls all the others and every downstream task. A thread pings
the loop; when a ping goes unanswered past `threshold`, it reads which task the loop is
running (`asyncio.current_task(loop)`, safe to read from another thread) and logs its name:
the hosting task of each trigger is named after the trigger, so the message says which one.

A loop waiting in its selector (epoll) blocks nothing, so the thread does not ping it then:
it sleeps until the loop wakes up for something else. A daemon whose sensors wait for hours
thus costs no wake-up five times a second (that was most of its idle CPU).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable

logger = logging.getLogger("orchestrator.watchdog")


class LoopWatchdog:
    """Start with `start()` from inside the loop; `stop()` ends the thread."""

    def __init__(self, *, threshold: float = 0.2) -> None:
        self.threshold = threshold
        self.blocked_seconds = 0.0
        self.blocks = 0
        self.blocked_by: str | None = None
        self.lag = 0.0  # how long the loop took to answer the last ping, in seconds
        self._names: dict[asyncio.Task[object], str | Callable[[], str]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop = threading.Event()
        self._answered = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._flagged = False
        self._sent_at = 0.0
        # Set while the loop is out of its selector's wait (always, without a selector).
        self._awake = threading.Event()
        self._awake.set()
        self._unhook: Callable[[], None] | None = None
        self.idle = False  # True while the thread sleeps because the loop is idle

    def name_current_task(self, name: str | Callable[[], str]) -> None:
        """Name the task running now (a trigger's host) for the watchdog's messages.

        A callable is called only when the task blocks the loop: most tasks never do, and
        a hundred thousand names made in advance would cost memory for nothing.
        """
        task = asyncio.current_task()
        if task is not None:
            self._names[task] = name
            task.add_done_callback(self._names.pop)

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._unhook = _follow_selector(self._loop, self._awake)
        self._thread = threading.Thread(target=self._watch, name="loop-watchdog", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._awake.set()  # a thread asleep until the loop wakes must see the stop
        if self._thread is not None:
            self._thread.join()
        if self._unhook is not None:
            self._unhook()

    # -- the thread -------------------------------------------------------------------------------

    def _watch(self) -> None:
        loop = self._loop
        assert loop is not None  # start() set it
        while not self._stop.is_set():
            self.idle = not self._awake.is_set()
            self._awake.wait()  # an idle loop is not blocked: nothing to ping
            self.idle = False
            if self._stop.is_set():
                return
            self._answered.clear()
            self._sent_at = time.monotonic()
            try:
                loop.call_soon_threadsafe(self._pong)
            except RuntimeError:  # the loop closed under us
                return
            if self._answered.wait(self.threshold) or self._stop.is_set():
                self._stop.wait(self.threshold)  # ping a few times a second, no more
                continue
            self._flag(loop)
            while not self._answered.wait(self.threshold) and not self._stop.is_set():
                pass

    def _flag(self, loop: asyncio.AbstractEventLoop) -> None:
        """The loop did not answer in time: name the task it is running."""
        task = asyncio.current_task(loop)
        name = self._names.get(task) if task is not None else None
        if callable(name):
            name = name()
        culprit = name or (task.get_name() if task is not None else "a callback")
        with self._lock:
            if self._answered.is_set():
                return  # it answered just now: not blocked after all
            self.blocked_by = culprit
            self.blocks += 1
            self._flagged = True
        logger.warning("the event loop is blocked by %s (more than %.2fs)", culprit, self.threshold)

    def _pong(self) -> None:
        """Runs in the loop: the answer to a ping. Ends (and measures) a flagged block."""
        with self._lock:
            self.lag = time.monotonic() - self._sent_at
            if self._flagged:
                blocked = time.monotonic() - self._sent_at
                self.blocked_seconds += blocked
                self._flagged = False
                logger.warning(
                    "the event loop was blocked for %.2fs by %s", blocked, self.blocked_by
                )
            self._answered.set()


def _follow_selector(
    loop: asyncio.AbstractEventLoop, awake: threading.Event
) -> Callable[[], None] | None:
    """Keep `awake` clear while the loop waits in its selector; returns how to undo it.

    None for a loop without a selector (not asyncio's `SelectorEventLoop`): `awake` stays
    set, and the thread pings all the time, as it must.
    """
    selector = getattr(loop, "_selector", None)
    select = getattr(selector, "select", None)
    if select is None:
        return None

    def select_watched(timeout: float | None = None) -> object:
        awake.clear()
        try:
            return select(timeout)
        finally:
            awake.set()

    hooked = vars(selector)
    previous = hooked.get("select")  # another watchdog's, on the same loop
    hooked["select"] = select_watched

    def unhook() -> None:
        if hooked.get("select") is select_watched:
            if previous is None:
                del hooked["select"]
            else:
                hooked["select"] = previous
        # else another hooked in after us: ours stays in its chain, keeping time for nobody

    return unhook
