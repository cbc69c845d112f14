"""The file triggers waiting on one folder, served together: one watch, one listing, one task.

A `FileTrigger` hosted alone holds a task, a watch subscription and its own listing of the
folder; a hundred thousand sensors on a hundred folders would list them fifty thousand times.
A `FolderHost` subscribes once per folder, lists it once for every batch of triggers that
arrives, and matches each changed file against the triggers by pattern: a trigger whose
pattern names one file is a dictionary lookup, not a glob per file.

Nothing is missed: the host subscribes before it lists, and lists again for triggers added
later (a file that landed before them is in that listing; one landing after, in a batch). A
lost batch (`rescan`) lists again for every trigger. A trigger fires once, with the oldest
matching file (by mtime, then path), as `FileTrigger.run()` would have yielded first. The
folder missing or gone fails every trigger on it, as each would have failed alone.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from typing import TYPE_CHECKING, NamedTuple, cast

from orchestrator.errors import TriggerError
from triggers.base import Ending, SharedHost, TriggerRuntime
from triggers.file_states import FileState, file_event, list_directory
from triggers.watch import Subscription, watch_directory

if TYPE_CHECKING:
    from triggers.file import FileTrigger

#: Triggers alike in what they match: (pattern, ignore_partial); the folder and `recursive`
#: are the host's.
Likeness = tuple[str, bool]
_GLOB_CHARACTERS = frozenset("*?[")


class Folder(NamedTuple):
    """What the triggers of one host share: the folder and how it is watched."""

    directory: str  # absolute
    recursive: bool
    polling: bool | None
    poll_interval: float


class FolderHost(SharedHost["FileTrigger"]):
    """The trusted file triggers without `stable_for` on one folder (`key`: a `Folder`)."""

    def __init__(self, key: Hashable, runtime: TriggerRuntime, ending: Ending) -> None:
        super().__init__(key, runtime, ending)
        self.folder = cast(Folder, key)
        self._unlisted: set[Hashable] = set()  # added since the last listing began
        self._alike: dict[Likeness, set[Hashable]] = {}
        self._globs: set[Likeness] = set()  # the likenesses whose pattern is a glob
        self._changes: Subscription | None = None

    def waiting(self) -> int:
        return 0 if self._changes is None else len(self.triggers) - len(self._unlisted)

    def _added(self, token: Hashable, trigger: FileTrigger) -> None:
        likeness = (trigger.pattern, trigger.ignore_partial)
        self._alike.setdefault(likeness, set()).add(token)
        if not _GLOB_CHARACTERS.isdisjoint(trigger.pattern):
            self._globs.add(likeness)
        self._unlisted.add(token)
        self._nudge()

    def _discarded(self, token: Hashable, trigger: FileTrigger) -> None:
        likeness = (trigger.pattern, trigger.ignore_partial)
        alike = self._alike.get(likeness)
        if alike is not None:
            alike.discard(token)
            if not alike:
                del self._alike[likeness]
                self._globs.discard(likeness)
        self._unlisted.discard(token)
        if not self.triggers:
            self._nudge()  # serve() ends

    def _nudge(self) -> None:
        if self._changes is not None:
            self._changes.nudge()

    async def serve(self) -> None:
        directory, recursive, polling, poll_interval = self.folder
        try:
            async with watch_directory(
                directory, recursive=recursive, polling=polling, poll_interval=poll_interval
            ) as changes:
                self._changes = changes
                while not self.finished():
                    await self._serve_once(directory, recursive, changes)
        except TriggerError as error:  # the folder is missing, gone, or cannot be listed
            self.end_all(error)
        finally:
            self._changes = None

    async def _serve_once(self, directory: str, recursive: bool, changes: Subscription) -> None:
        """List the folder for triggers added since the last listing, or take what changed."""
        if self._unlisted:
            listed = set(self._unlisted)
            files = await list_directory(directory, recursive)
            self._unlisted -= listed
            self._match(directory, files.items())
            return
        await changes.wait()
        batch = changes.take()  # raises TriggerError once the folder is gone
        if batch is not None and batch.rescan:
            self._unlisted.update(self.triggers)
        elif batch is not None:
            self._match(directory, batch.files.items())

    def _match(self, directory: str, files: Iterable[tuple[str, FileState | None]]) -> None:
        """End every trigger a file matches, with the oldest file it matches."""
        present = [(path, state) for path, state in files if state is not None]
        for relative, state in sorted(present, key=lambda item: (item[1].mtime_ns, item[0])):
            for likeness in self._matching(relative):
                event = file_event(directory, relative, state)
                for token in list(self._alike.get(likeness, ())):
                    self.end(token, event)
            if not self.triggers:
                return

    def _matching(self, relative: str) -> list[Likeness]:
        name = relative.rpartition("/")[2]
        candidates = {(text, ignore) for text in {name, relative} for ignore in (True, False)}
        found = []
        for likeness in [*self._globs, *candidates.intersection(self._alike)]:
            alike = self._alike.get(likeness)
            if alike and self.triggers[next(iter(alike))].matches(relative):
                found.append(likeness)
        return found
