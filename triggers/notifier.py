"""Many watched directories on one RustNotify and one thread, re-opened without a gap.

A RustNotify per directory costs an inotify instance (`fs.inotify.max_user_instances` is 128 per
user by default, shared with every other program) and a thread. A `NotifierGroup` puts the roots
of one event loop (recursive or not, OS notifications or polling) on one RustNotify driven by one
`NotifierThread`, which sleeps on a `Doorbell` (`triggers.doorbell`) while nothing changes and
lets RustNotify collect with a 1 ms step once something has.

RustNotify takes a list of paths but cannot add one later, so when the set of roots changes the
group opens a new one and hands it to the thread, which drains the old one once more and only then
closes it: every change is reported by the old one, the new one, or both. Twice is harmless:
subscribers keep the latest state of a path, and `FileTrigger` fires once per file version.

Changes to the set coalesce: while one re-open runs, every root that joins or leaves waits for the
next one, so arming a hundred sensors at once opens a few notifiers, not a hundred.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections.abc import Callable, Mapping
from functools import partial
from typing import Generic, Protocol, TypeVar

import anyio
import anyio.lowlevel
from watchfiles._rust_notify import WatchfilesRustInternalError

from triggers.doorbell import Doorbell, open_doorbell
from triggers.notifier_opening import NotifierHandle, OpenedNotifier, open_notifier

logger = logging.getLogger("triggers.watch")  # one logger for everything about watching

DEBOUNCE_MS = 1  # watchfiles then reports in ~2 ms instead of ~80 ms
STEP_MS = 1
# How often the thread looks for a replacement: watch() returns on a timeout only when it holds
# no change, so nothing is lost (its stop event would drop the changes it holds).
SWITCH_CHECK_MS = 2
DRAIN_MS = 1  # a last look at a notifier being replaced: what it holds is returned at once
# Once the doorbell rang: how long RustNotify may take to hold the change (it reads its own
# inotify queue in its own thread, so it may be a moment behind the doorbell).
SETTLE_MS = 20
# The longest the thread sleeps on the doorbell. A safety net only: a change in a folder made
# a moment before the doorbell watched it is in RustNotify and no later than this late.
SWEEP_S = 1.0

Changes = set[tuple[int, str]]
Batch = TypeVar("Batch")
Batch_contra = TypeVar("Batch_contra", contravariant=True)
# The thread's view of changes: a batch per root they belong to, and the roots that are gone.
Describe = Callable[[Changes, frozenset[str], bool], tuple[Mapping[str, Batch], frozenset[str]]]


class Member(Protocol[Batch_contra]):
    """A watched root as the group sees it (every call is made in the event loop)."""

    @property
    def root(self) -> str: ...

    @property
    def poll_delay_ms(self) -> int: ...

    def covered(self) -> None:
        """The notifier watches the root now."""

    def deliver(self, batch: Batch_contra) -> None: ...

    def rescan(self) -> None:
        """Changes may have been lost: subscribers must list the directory again."""

    def fail(self, message: str) -> None:
        """The root cannot be watched (any more); the group has dropped the member."""

    def poll_instead(self, reason: str) -> None:
        """The OS watch limit is reached; the group has dropped the member."""


class NotifierThread:
    """The thread that drains a group's RustNotify and swaps in each replacement without a gap."""

    def __init__(
        self,
        name: str,
        *,
        publish: Callable[[Changes, frozenset[str]], None],
        reopen: Callable[[frozenset[str]], NotifierHandle | None],
        rescan: Callable[[frozenset[str]], None],
        switched: Callable[[NotifierHandle | None], None],
        doorbell: Doorbell,
    ) -> None:
        self._doorbell = doorbell
        self._publish = publish
        self._reopen = reopen
        self._rescan = rescan
        self._switched = switched  # with None once the thread ends
        self._stopping = threading.Event()
        self._replacements: queue.SimpleQueue[NotifierHandle | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self, first: NotifierHandle) -> None:
        self._replacements.put(first)
        self._thread.start()

    def replace(self, handle: NotifierHandle) -> None:
        """Watch with `handle` from now on (it is open already: nothing falls between)."""
        self._replacements.put(handle)
        self._doorbell.wake()

    def stop(self) -> None:
        self._stopping.set()
        self._replacements.put(None)  # wakes the thread if it waits for a notifier
        self._doorbell.wake()

    def join(self) -> None:
        self._thread.join()

    # -- in the thread --------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._drive_each(self._replacements.get())
        finally:
            self._doorbell.close()
            self._switched(None)  # nobody may wait for a switch that will never come
            while not self._replacements.empty():  # handed over after the stop: close them
                if (handle := self._replacements.get()) is not None:
                    handle.notify.__exit__(None, None, None)

    def _drive_each(self, current: NotifierHandle | None) -> None:
        while current is not None:
            self._doorbell.watch(current.roots)
            following = self._drive(current)
            if following is None and not self._stopping.is_set():
                following = self._replacements.get()  # nothing to watch until the group opens one
            if following is not None:
                self._switched(following)  # the notifiers before it are closed
            current = following

    def _drive(self, current: NotifierHandle) -> NotifierHandle | None:
        """Drain `current` until replaced (the replacement) or stopped (None), then close it."""
        with current.notify:
            try:
                return self._drain_until_replaced(current)
            except WatchfilesRustInternalError as error:
                # The error sticks to this RustNotify: every later watch() raises it again.
                _log_error(current, error)
        if self._stopping.is_set():
            return None
        fresh = self._reopen(current.roots)
        if fresh is not None:
            # Only now that the new watch is in place: a rescan done earlier could miss files.
            self._rescan(fresh.roots)
        return fresh

    def _drain_until_replaced(self, current: NotifierHandle) -> NotifierHandle | None:
        """Take changes each time the doorbell rings, until replaced or stopped.

        The doorbell watches `current`'s roots already. The first take comes before any
        sleep: changes RustNotify saw before the doorbell watched its roots rang no bell.
        A doorbell that never sleeps makes this a take every `SWITCH_CHECK_MS`, each looking
        every `STEP_MS`.
        """
        timeout_ms = SWITCH_CHECK_MS
        while not self._stopping.is_set():
            self._take(current, timeout_ms, self._stopping)
            if not self._replacements.empty():
                return self._switch(current)
            timeout_ms = SETTLE_MS if self._doorbell.wait(SWEEP_S) else SWITCH_CHECK_MS
        return None

    def _switch(self, current: NotifierHandle) -> NotifierHandle | None:
        """The newest replacement, once `current` and the older ones have been drained."""
        handles: list[NotifierHandle] = []
        while not self._replacements.empty():
            if (handle := self._replacements.get()) is not None:
                handles.append(handle)
        if not handles:  # the stop sentinel: the group has gone
            return None
        self._doorbell.watch(handles[-1].roots)  # before the old ones close: nothing unrung
        self._last_take(current)
        for older in handles[:-1]:
            with older.notify:
                self._last_take(older)
        return handles[-1]

    def _last_take(self, handle: NotifierHandle) -> None:
        """What a notifier being replaced still holds (the replacement is open already)."""
        try:
            self._take(handle, DRAIN_MS, None)
        except WatchfilesRustInternalError as error:
            _log_error(handle, error)
            self._rescan(handle.roots)  # the replacement is in place: a rescan misses nothing

    def _take(self, handle: NotifierHandle, timeout_ms: int, stop: threading.Event | None) -> None:
        changes = handle.notify.watch(DEBOUNCE_MS, STEP_MS, timeout_ms, stop)
        if isinstance(changes, set):
            self._publish(changes, handle.roots)


def _log_error(handle: NotifierHandle, error: BaseException) -> None:
    roots = ", ".join(sorted(handle.roots))
    logger.warning("watching %s failed (%s); re-opening the watch and rescanning", roots, error)


class NotifierGroup(Generic[Batch]):
    """The roots of one event loop that share a notifier: recursive or not, polling or not."""

    def __init__(self, *, recursive: bool, polling: bool, describe: Describe[Batch]) -> None:
        self.recursive = recursive
        self.polling = polling
        self.members: set[Member[Batch]] = set()
        self._describe = describe
        self._loop = asyncio.get_running_loop()
        self._thread: NotifierThread | None = None
        self._watched: frozenset[str] = frozenset()  # by the newest notifier, minus roots gone
        self._delay_ms = 0
        self._rebuilding: anyio.Event | None = None
        self._switch: tuple[NotifierHandle, anyio.Event] | None = None  # awaited by `_hand_over`

    @property
    def running(self) -> bool:
        """True while the group has a notifier thread."""
        return self._thread is not None

    def add(self, member: Member[Batch]) -> None:
        """Count `member` in; `settle()` then watches its root (at once if it is watched)."""
        self.members.add(member)
        # While a rebuild runs, the notifier may be on its way out (its last member left):
        # the member is covered once `settle()` has rebuilt for it, not by what ends now.
        if member.root in self._watched and self._rebuilding is None:
            member.covered()

    def remove(self, member: Member[Batch]) -> None:
        self.members.discard(member)

    async def settle(self) -> None:
        """Open, swap or stop the notifier until it watches exactly the members' roots."""
        while self._rebuilding is not None or self._out_of_date():
            if self._rebuilding is not None:
                await self._rebuilding.wait()
            else:
                await self._rebuild_once()
        for member in list(self.members):  # those that joined while a rebuild ran
            if member.root in self._watched:
                member.covered()

    def _target(self) -> tuple[frozenset[str], int]:
        roots = frozenset(member.root for member in self.members)
        delays = [member.poll_delay_ms for member in self.members]
        return roots, min(delays) if delays and self.polling else self._delay_ms

    def _out_of_date(self) -> bool:
        roots, delay = self._target()
        if not roots:
            return self._thread is not None
        return roots != self._watched or delay != self._delay_ms

    async def _rebuild_once(self) -> None:
        self._rebuilding = done = anyio.Event()
        try:
            # A notifier half-opened or half-swapped would leak: finish even when cancelled.
            with anyio.CancelScope(shield=True):
                await anyio.lowlevel.checkpoint()  # members arriving in this iteration join too
                await self._rebuild()
        finally:
            self._rebuilding = None
            done.set()

    async def _rebuild(self) -> None:
        roots, delay = self._target()
        if not roots:
            await self._stop_thread()
            self._watched = frozenset()
            return
        opening = partial(
            open_notifier, roots, recursive=self.recursive, polling=self.polling,
            poll_delay_ms=delay, known=self._watched,
        )  # fmt: skip
        opened = await anyio.to_thread.run_sync(opening)
        if opened.handle is not None:
            await self._hand_over(opened.handle)
        self._watched, self._delay_ms = opened.roots, delay
        self._apply(opened)

    async def _hand_over(self, handle: NotifierHandle) -> None:
        """Give the thread `handle`; return once the notifiers before it are closed.

        Waiting keeps at most two inotify instances per group open, even while a hundred
        directories join one after another.
        """
        if self._thread is not None:
            self._switch = (handle, anyio.Event())
            self._thread.replace(handle)
            await self._switch[1].wait()
            return
        kind = ("recursive " if self.recursive else "") + ("polling" if self.polling else "os")
        self._thread = NotifierThread(
            f"file-watch {kind}",
            publish=self._publish,
            reopen=self._reopen,
            rescan=self._rescan,
            switched=partial(self._post, self._on_switched),
            doorbell=open_doorbell(recursive=self.recursive, polling=self.polling),
        )
        self._thread.start(handle)

    async def _stop_thread(self) -> None:
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.stop()
            await anyio.to_thread.run_sync(thread.join)

    # -- in the event loop, called from the thread through `_post` ------------------------------

    def _apply(self, opened: OpenedNotifier) -> None:
        """Tell each member whether its root is watched, failed, or must be polled."""
        self._watched -= opened.failed.keys() | opened.to_polling.keys()
        for member in list(self.members):
            if (message := opened.failed.get(member.root)) is not None:
                self.members.discard(member)
                member.fail(message)
            elif (reason := opened.to_polling.get(member.root)) is not None:
                self.members.discard(member)
                member.poll_instead(reason)
            elif member.root in self._watched:
                member.covered()

    def _route(self, batches: Mapping[str, Batch], gone: frozenset[str]) -> None:
        self._watched -= gone  # a root made again later needs a fresh watch
        for member in list(self.members):
            if (batch := batches.get(member.root)) is not None:
                member.deliver(batch)  # changes seen before the failure are handed out first
            if member.root in gone:
                self.members.discard(member)
                member.fail(f"the watched directory {member.root} was deleted or moved away")

    def _on_switched(self, handle: NotifierHandle | None) -> None:
        if self._switch is not None and (handle is None or handle is self._switch[0]):
            self._switch[1].set()
            self._switch = None

    def _rescan_members(self, roots: frozenset[str]) -> None:
        for member in list(self.members):
            if member.root in roots:
                member.rescan()

    # -- in the notifier thread -----------------------------------------------------------------

    def _publish(self, changes: Changes, roots: frozenset[str]) -> None:
        batches, gone = self._describe(changes, roots, self.recursive)
        if batches or gone:
            self._post(self._route, batches, gone)

    def _reopen(self, roots: frozenset[str]) -> NotifierHandle | None:
        opened = open_notifier(
            roots, recursive=self.recursive, polling=self.polling,
            poll_delay_ms=self._delay_ms, known=roots,
        )  # fmt: skip
        self._post(self._apply, opened)
        return opened.handle

    def _rescan(self, roots: frozenset[str]) -> None:
        self._post(self._rescan_members, roots)

    def _post(self, callback: Callable[..., object], *args: object) -> None:
        try:
            self._loop.call_soon_threadsafe(callback, *args)
        except RuntimeError:  # the loop is closed: nobody is listening any more
            if self._thread is not None:
                self._thread.stop()
