"""Who is looking: signed session cookies, their CSRF tokens, and one-time login links.

A session is a cookie the daemon signed with a key kept in the state directory
(`ui-session.key`, mode 0600, made at first start), so sessions survive a restart and a
forged or edited cookie is refused. Signing is itsdangerous' (HMAC-SHA256 over the JSON);
the expiry is ours, read from the engine's clock, so tests move time instead of waiting.

```
session = book.open_session(scope="admin", token_id=None)   # after a login
cookie = book.cookie(session)                               # Set-Cookie value
book.read(cookie) -> Session | None                         # every request
book.csrf(session)                                          # forms and htmx headers carry it
```

A session opened with a bearer token names the token: revoking or expiring the token ends
the session at once (checked on every request). Logging out ends the session for good: its
id is remembered until the moment it would have expired anyway, so memory is bounded by the
sessions logged out in the last `ui_session_seconds`.

A login link (`orchestrator open`) carries a random code valid for `LINK_SECONDS`, usable once.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from itsdangerous import BadSignature, URLSafeSerializer

from orchestrator.api.tokens import SCOPES
from orchestrator.errors import StateDirError

if TYPE_CHECKING:
    from orchestrator.clock import Clock

COOKIE_NAME = "orch_session"
KEY_FILENAME = "ui-session.key"
LINK_SECONDS = 120.0  # a login link works this long, once
MAX_LINKS = 100  # unused links held at once; the oldest is dropped past it
_KEY_BYTES = 32


@dataclass(frozen=True, kw_only=True)
class Session:
    """One signed-in browser: what it may do, until when, and through which token if any."""

    session_id: str
    scope: str  # read | trigger | admin
    expires_at: float
    token_id: str | None = None  # None: signed in through a login link (the local user)


class SessionBook:
    """Issues and checks sessions and login links; one per daemon."""

    def __init__(self, key: bytes, clock: Clock, *, lifetime: float) -> None:
        self._serializer = URLSafeSerializer(key, salt="orchestrator-ui-session")
        self._csrf_key = hmac.new(key, b"orchestrator-ui-csrf", hashlib.sha256).digest()
        self._clock = clock
        self.lifetime = lifetime
        self._ended: dict[str, float] = {}  # logged-out session id -> when it would expire
        self._links: dict[str, float] = {}  # login code -> when it expires

    # -- sessions ----------------------------------------------------------------------------

    def open_session(self, *, scope: str, token_id: str | None) -> Session:
        if scope not in SCOPES:
            raise ValueError(f"unknown scope {scope!r}")
        return Session(
            session_id=secrets.token_urlsafe(16),
            scope=scope,
            expires_at=self._clock.now() + self.lifetime,
            token_id=token_id,
        )

    def cookie(self, session: Session) -> str:
        payload = {
            "sid": session.session_id,
            "scope": session.scope,
            "exp": session.expires_at,
            "tok": session.token_id,
        }
        return str(self._serializer.dumps(payload))

    def read(self, cookie: str | None) -> Session | None:
        """The session a cookie holds, if it is ours, whole, unexpired and not logged out."""
        if not cookie or len(cookie) > 1024:
            return None
        try:
            payload = self._serializer.loads(cookie)
        except BadSignature:
            return None
        session = _session_of(payload)
        if session is None or session.expires_at <= self._clock.now():
            return None
        if session.session_id in self._ended:
            return None
        return session

    def end(self, session: Session) -> None:
        """Log out: this session's cookie is refused from now on, even if a copy is replayed."""
        now = self._clock.now()
        self._ended = {sid: until for sid, until in self._ended.items() if until > now}
        self._ended[session.session_id] = session.expires_at

    def csrf(self, session: Session) -> str:
        """The token a state-changing request of this session must carry."""
        digest = hmac.new(self._csrf_key, session.session_id.encode(), hashlib.sha256)
        return digest.hexdigest()

    def csrf_matches(self, session: Session, sent: str | None) -> bool:
        return sent is not None and hmac.compare_digest(self.csrf(session), sent)

    # -- one-time login links ----------------------------------------------------------------

    def issue_link_code(self) -> str:
        """A code for `/login/once/<code>`: valid `LINK_SECONDS`, usable once."""
        now = self._clock.now()
        self._links = {code: until for code, until in self._links.items() if until > now}
        while len(self._links) >= MAX_LINKS:
            del self._links[next(iter(self._links))]
        code = secrets.token_urlsafe(24)
        self._links[code] = now + LINK_SECONDS
        return code

    def redeem_link_code(self, code: str) -> bool:
        """True once for a code issued and not yet expired; False ever after."""
        until = self._links.pop(code, None)
        return until is not None and until > self._clock.now()


def _session_of(payload: Any) -> Session | None:
    if not isinstance(payload, dict):
        return None
    sid, scope, expires, token = (payload.get(k) for k in ("sid", "scope", "exp", "tok"))
    if not isinstance(sid, str) or scope not in SCOPES or not isinstance(expires, int | float):
        return None
    if token is not None and not isinstance(token, str):
        return None
    return Session(session_id=sid, scope=str(scope), expires_at=float(expires), token_id=token)


def load_key(state_dir: Path) -> bytes:
    """The state directory's session key, made (mode 0600) on first use.

    Written whole to a temporary file and linked into place, so a crash never leaves a
    half-written key and two processes starting at once agree on one key.
    """
    path = state_dir / KEY_FILENAME
    if not path.exists():
        temporary = path.with_name(f".{KEY_FILENAME}.{os.getpid()}")
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            with os.fdopen(descriptor, "wb") as file:
                file.write(secrets.token_bytes(_KEY_BYTES))
                file.flush()
                os.fsync(file.fileno())
            with contextlib.suppress(FileExistsError):
                os.link(temporary, path)
        finally:
            temporary.unlink(missing_ok=True)
    key = path.read_bytes()
    if len(key) != _KEY_BYTES:
        raise StateDirError(
            f"{path} is damaged ({len(key)} bytes, not {_KEY_BYTES}); delete it and restart "
            "the daemon (everyone signed in to the web UI then signs in again)"
        )
    return key
