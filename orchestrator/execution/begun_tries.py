"""Which tries' code had begun when the daemon died: one line per try, written before it begins.

`max_interrupted_tries` counts, after a crash, only the tries whose code had begun: a try whose
worker had not got the job cannot be what killed the daemon, and a daemon killed again and
again right after it starts must not fail the tries it had just sent out. The mark used to be
the try's log file, made before the code ran; logs are now made by their first byte (a quiet
try leaves none, `log_files`), so the mark is a line in `begun-tries` in the state directory:
the try's log path as a JSON string (a task id may hold a newline), appended by the try's own
thread or worker just before its code runs.

An append to a file that exists makes no inode (making one walks past every inode freed in
the last minute on ext4 without a journal), and like the log file it survives a `kill -9` of
the daemon: it is in the page cache, not in the process. Async tries and tries on Dask still
open their log beforehand; its existence still counts too.

The file stays small: the daemon clears it once its recovery is committed, and every
`COMPACT_EVERY` tries it keeps only the lines an earlier process left (a daemon that did not
recover) and the tries running now.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterable
from pathlib import Path

from orchestrator.execution.log_files import open_log_fd

logger = logging.getLogger("orchestrator.executor")

FILE_NAME = "begun-tries"
COMPACT_EVERY = 4096


def mark_begun(journal: str, log_path: str) -> None:
    """Leave the mark that the try logging to `log_path` begins: its line in `journal` or, if
    that cannot be written, its log file (OSError if neither can). No journal (a job not from
    the daemon's dispatcher): no mark."""
    if not (journal and log_path):
        return
    try:
        fd = os.open(journal, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, _line(log_path))  # one write: lines never interleave
        finally:
            os.close(fd)
    except OSError as error:
        logger.warning("cannot note a try's start in %s: %s", journal, error)
        os.close(open_log_fd(log_path))


class BegunTries:
    """The daemon's side of the journal: read at recovery, cleared, kept small."""

    def __init__(self, state_dir: Path, *, compact_every: int = COMPACT_EVERY) -> None:
        self.path = str(state_dir / FILE_NAME)
        try:  # what an earlier process left, kept by compaction unless a recovery clears it
            self._kept = os.stat(self.path).st_size
        except OSError:
            self._kept = 0
        self._compact_every = self._until_compaction = compact_every

    def read(self) -> frozenset[str]:
        """The log paths of the tries marked as begun (blocking: call it off the loop)."""
        try:
            with open(self.path, "rb") as journal:
                data = journal.read()
        except FileNotFoundError:
            return frozenset()
        paths: set[str] = set()
        for line in data.decode("utf-8", errors="replace").splitlines():
            try:
                path = json.loads(line)
            except ValueError:  # cut short by a power cut: that try's mark is lost
                continue
            if isinstance(path, str):
                paths.add(path)
        return frozenset(paths)

    def clear(self) -> None:
        """Forget every mark: the recovery that read them is committed, nothing runs yet."""
        self._write_from(0, ())

    def started(self, running: Callable[[], Iterable[str]]) -> None:
        """Count a try sent to run; now and then keep only what `running()` still needs."""
        self._until_compaction -= 1
        if self._until_compaction <= 0:
            self._until_compaction = self._compact_every
            self._write_from(self._kept, running())

    def _write_from(self, offset: int, log_paths: Iterable[str]) -> None:
        """Cut the journal at `offset` and append `log_paths` (one write, on the loop: small).

        Appended, not written at `offset`: a try's thread or worker may append its own line in
        between, and keeps it. A line cut before that belongs to a try in `log_paths`.
        """
        lines = b"".join(_line(path) for path in log_paths if path)
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.ftruncate(fd, offset)
                if lines:
                    os.write(fd, lines)
            finally:
                os.close(fd)
        except OSError as error:  # it only grows: tries still count, nothing is lost
            logger.warning("cannot compact %s: %s", self.path, error)
        if offset == 0:
            self._kept = 0


def _line(log_path: str) -> bytes:
    return f"{json.dumps(log_path)}\n".encode()
