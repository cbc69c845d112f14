"""Tries' logs created off the event loop, every log asked for at once in one thread trip.

An async task runs in the engine's event loop, but its log must be open before its code runs,
and opening a new try's log is blocking file-system work: the run's and the task's folders
(two `mkdir`s) and the file itself. Done on the loop that was about a quarter of a
millisecond per try, the largest single cost of a webhook-started run at 64 concurrent
senders (`bench/webhooks.py --profile`), paid while deliveries waited for the loop.

A worker thread does it instead. The tries a step starts together ask in the same moment, so
the first to ask waits one turn of the loop for the others and carries them all in one trip:
one thread hand-off per step, not one per try.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import anyio
import anyio.lowlevel
import anyio.to_thread

from orchestrator.execution.log_files import open_log_fd


@dataclass(eq=False)
class _Request:
    path: str
    fd: int = -1
    error: OSError | None = None


@dataclass(eq=False)
class _Trip:
    requests: list[_Request] = field(default_factory=list)
    done: anyio.Event = field(default_factory=anyio.Event)


class LogOpener:
    """Opens tries' logs (see `open_log_fd`) in a worker thread, in groups."""

    def __init__(self) -> None:
        self._forming: _Trip | None = None  # the trip that is still taking requests
        self.trips = 0  # thread trips taken: fewer than logs opened when tries start together

    async def open(self, log_path: str) -> int:
        """The try's log as a file descriptor (read-write, appending); OSError if it cannot be.

        Shielded from cancellation: a log opened for a caller that went away would leak its
        descriptor, and the wait is one thread trip.
        """
        request = _Request(log_path)
        with anyio.CancelScope(shield=True):
            trip = self._forming
            if trip is None:
                await self._carry(request)
            else:
                trip.requests.append(request)
                await trip.done.wait()
        if request.error is not None:
            raise request.error
        if request.fd < 0:  # the trip itself failed, and its carrier saw why
            raise OSError(f"the try's log {log_path} was not opened")
        return request.fd

    async def _carry(self, request: _Request) -> None:
        """Form a trip with `request`, let this turn's other askers join, and take it."""
        trip = self._forming = _Trip([request])
        await anyio.lowlevel.checkpoint()  # tries started by the same step ask in this turn
        self._forming = None
        self.trips += 1
        try:
            await anyio.to_thread.run_sync(_open_all, trip.requests)
        finally:
            trip.done.set()


def _open_all(requests: list[_Request]) -> None:
    """Open each request's log (in the worker thread); a failure is that request's alone."""
    for request in requests:
        try:
            request.fd = open_log_fd(request.path)
        except OSError as error:
            request.error = error
