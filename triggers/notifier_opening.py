"""Opening one RustNotify for many roots, and setting aside the roots that cannot be watched.

RustNotify fails as a whole when one of its roots fails (deleted, not ours to read, past the OS
watch limit), so the culprits are found, each with a message a user can act on, and the rest
opened again: one bad folder never stops the others being watched.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

from watchfiles._rust_notify import RustNotify, WatchfilesRustInternalError


class NotifierHandle(NamedTuple):
    notify: RustNotify
    roots: frozenset[str]


@dataclass(frozen=True)
class OpenedNotifier:
    """A notifier for the roots that could be watched, and why the others could not."""

    handle: NotifierHandle | None
    failed: Mapping[str, str] = field(default_factory=dict)  # root -> the error message
    to_polling: Mapping[str, str] = field(default_factory=dict)  # root -> the watch-limit error

    @property
    def roots(self) -> frozenset[str]:
        return frozenset() if self.handle is None else self.handle.roots


def open_notifier(
    roots: frozenset[str],
    *,
    recursive: bool,
    polling: bool,
    poll_delay_ms: int,
    known: frozenset[str],
) -> OpenedNotifier:
    """Open one RustNotify for `roots`, leaving out those that fail. Blocking: use a thread.

    One bad root fails the whole RustNotify, so the culprits are found, set aside and the rest
    tried again. `known`: the roots watched so far (a known root that is gone was deleted).
    """
    remaining = set(roots)
    failed: dict[str, str] = {}
    to_polling: dict[str, str] = {}
    while remaining:
        try:
            notify = _rust_notify(sorted(remaining), recursive, polling, poll_delay_ms)
        except (OSError, WatchfilesRustInternalError) as error:
            culprits, limited = _culprits(error, frozenset(remaining), known, polling)
            failed.update(culprits)
            to_polling.update(limited)
            remaining -= culprits.keys() | limited.keys()
        else:
            return OpenedNotifier(NotifierHandle(notify, frozenset(remaining)), failed, to_polling)
    return OpenedNotifier(None, failed, to_polling)


def _culprits(
    error: BaseException, roots: frozenset[str], known: frozenset[str], polling: bool
) -> tuple[dict[str, str], dict[str, str]]:
    """The roots to fail and those to poll instead; never both empty, so the caller progresses."""
    gone = {root: _open_error_message(root, error, root in known) for root in roots if _gone(root)}
    if gone:
        return gone, {}
    suspects = (roots - known) or roots  # the known ones were watched fine until now
    if not polling and is_watch_limit(error):
        return {}, dict.fromkeys(suspects, str(error))
    alone = {root: message for root in suspects if (message := _alone_error(root, polling))}
    return alone or {root: _open_error_message(root, error, False) for root in suspects}, {}


def _alone_error(root: str, polling: bool) -> str | None:
    """Why `root` cannot be watched on its own, or None when it can."""
    try:
        with _rust_notify([root], False, polling, 1000):
            return None
    except (OSError, WatchfilesRustInternalError) as error:
        return _open_error_message(root, error, False)


def _rust_notify(roots: list[str], recursive: bool, polling: bool, delay_ms: int) -> RustNotify:
    return RustNotify(roots, False, polling, delay_ms, recursive, False)


def _gone(root: str) -> bool:
    return not os.path.isdir(root)


def _open_error_message(root: str, error: BaseException, was_watched: bool) -> str:
    if isinstance(error, FileNotFoundError) or _gone(root):
        if was_watched:
            return f"the watched directory {root} was deleted or moved away"
        return f"the directory {root} does not exist"
    if isinstance(error, PermissionError):
        return f"cannot watch the directory {root}: permission denied"
    return f"cannot watch the directory {root}: {error}"


def is_watch_limit(error: BaseException) -> bool:
    """True for inotify's ENOSPC (max_user_watches) and EMFILE (max_user_instances)."""
    text = str(error).lower()
    markers = ("watch limit", "maxfileswatch", "os error 28", "os error 24", "too many open files")
    return any(marker in text for marker in markers)
