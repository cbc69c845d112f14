"""`ReplayGuard`: a signed body seen again within the replay window gets the first run.

A GitHub or plain-HMAC signature covers the body only. The delivery id travels in a header
nobody signs, so whoever captured one delivery can send it again under a new id (or none)
and it verifies. Its run's dedup key cannot catch that; this can: the digest of each signed
body that started a run is kept for `webhook_replay_window` seconds, and the same body to
the same webhook within it is answered with the first run, `created: false`.

The window is kept in memory: a restart forgets it (the delivery-id dedup, in the store,
does not). Two deliveries that are meant to be distinct but have byte-identical bodies
within the window are one run: senders put an id or a timestamp in the body for that reason.
Standard Webhooks needs none of this: its signature covers the message id and a timestamp.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import anyio

from orchestrator.clock import Clock

#: Bodies remembered at most; past it the oldest are forgotten first.
MAX_REMEMBERED = 100_000


@dataclass(eq=False)
class _Pending:
    """A body whose run is being started: later copies of it wait for that.

    The event is made by the first copy that waits: almost every body has none (an
    `anyio.Event` costs 2 us to make, per delivery).
    """

    expires_at: float
    _settled: anyio.Event | None = None
    _done: bool = False

    async def wait(self) -> None:
        if self._done:
            return
        if self._settled is None:
            self._settled = anyio.Event()
        await self._settled.wait()

    def set(self) -> None:
        self._done = True
        if self._settled is not None:
            self._settled.set()


#: A body whose run is committed: (expires_at, run_id). A tuple of a float and a str, which
#: the cycle collector stops tracking, so the window's 100,000 bodies cost its full
#: collections nothing (each used to keep a claim with its Event: four tracked objects, and
#: the p99 of a webhook storm was those collections' pauses).
_Settled = tuple[float, str]


class ReplayGuard:
    """Signed bodies seen recently, per webhook, and the run each started."""

    def __init__(self, clock: Clock, *, max_remembered: int = MAX_REMEMBERED) -> None:
        self._clock = clock
        self._max = max_remembered
        self._claims: dict[bytes, _Pending | _Settled] = {}  # in the order they were made

    @staticmethod
    def key(hook_name: str, body: bytes) -> bytes:
        return hashlib.sha256(hook_name.encode() + b"\0" + body).digest()

    async def claim(self, key: bytes, window: float) -> str | None:
        """None if `key` is new (the caller starts the run, then `settle`s or `release`s);
        else the run the first delivery started, once that is committed."""
        while True:
            now = self._clock.now()
            self._forget_expired(now)
            earlier = self._claims.get(key)
            if earlier is None:
                self._claims[key] = _Pending(expires_at=now + window)
                self._forget_oldest()
                return None
            if isinstance(earlier, tuple):
                return earlier[1]
            await earlier.wait()
            # Settled: the next turn finds its run, or nothing if the first delivery failed
            # before its run was committed, and then this one tries afresh.

    def settle(self, key: bytes, run_id: str) -> None:
        claim = self._claims.get(key)
        if isinstance(claim, _Pending):
            self._claims[key] = (claim.expires_at, run_id)  # its place in the order stays
            claim.set()

    def release(self, key: bytes) -> None:
        claim = self._claims.pop(key, None)
        if isinstance(claim, _Pending):
            claim.set()

    def __len__(self) -> int:
        return len(self._claims)

    def _forget_expired(self, now: float) -> None:
        # One window for all, so the oldest claims expire first: stop at the first one alive.
        while self._claims:
            key, claim = next(iter(self._claims.items()))
            if isinstance(claim, _Pending) or claim[0] > now:
                return
            del self._claims[key]

    def _forget_oldest(self) -> None:
        while len(self._claims) > self._max:
            claim = self._claims.pop(next(iter(self._claims)))
            if isinstance(claim, _Pending):
                claim.set()
