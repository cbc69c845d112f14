"""The live view of one run: a table and a progress bar on a terminal, plain lines elsewhere.

`RunDisplay` only consumes the engine's change stream (plus store snapshots at the start and
at the end), so it never sits in the scheduler's path. On a terminal, rich redraws the table
from its own thread at most ten times a second, however fast changes arrive. Elsewhere (CI
logs, pipes) it prints one line per change and never a live widget, whose cursor movements
would garble a log file.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterable, Callable, Iterable
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING

from rich import box
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from orchestrator.changes import Change, RunChanged, TaskChanged
from orchestrator.state import RunState, TaskState

if TYPE_CHECKING:
    from orchestrator.authoring.dag import DAG
    from orchestrator.store.records import TaskInstanceRecord

#: The colour of each task and run state, shared by every command that shows states.
STATE_STYLES: dict[str, str] = {
    "none": "dim",
    "scheduled": "yellow",
    "queued": "yellow",
    "running": "bold cyan",
    "deferred": "magenta",
    "up_for_retry": "bold yellow",
    "success": "green",
    "failed": "bold red",
    "skipped": "dim",
    "upstream_failed": "red",
    "cancelled": "dim red",
}

_REFRESH_PER_SECOND = 10
_LABEL_WIDTH = 16
_FAILURES = frozenset({TaskState.FAILED, TaskState.UPSTREAM_FAILED})
_ACTIVE = frozenset(
    {TaskState.RUNNING, TaskState.QUEUED, TaskState.DEFERRED, TaskState.UP_FOR_RETRY}
)


def state_text(state: str) -> Text:
    """A state name in its colour."""
    return Text(state, style=STATE_STYLES.get(state, ""))


def format_duration(seconds: float | None) -> str:
    """`0.42s`, `12.3s`, `2m05s`, `1h02m`; empty when unknown."""
    if seconds is None:
        return ""
    if seconds < 10:
        return f"{max(seconds, 0.0):.2f}s"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def format_clock(at: float) -> str:
    """The local time of day of a timestamp, `HH:MM:SS`."""
    return time.strftime("%H:%M:%S", time.localtime(at))


def task_label(task_id: str, map_index: int) -> str:
    """`train`, or `train[3]` for one instance of an expanded task."""
    return task_id if map_index < 0 else f"{task_id}[{map_index}]"


@dataclass
class TaskRow:
    """What the display knows about one task instance."""

    task_id: str
    map_index: int = -1
    state: TaskState = TaskState.NONE
    try_number: int = 0
    started_at: float | None = None
    ended_at: float | None = None
    error: str | None = None
    log_path: str | None = None

    @property
    def label(self) -> str:
        return task_label(self.task_id, self.map_index)

    def duration(self, now: float) -> float | None:
        """Seconds of the current (or last) try; None before it started."""
        if self.started_at is None:
            return None
        end = self.ended_at if self.ended_at is not None else now
        return end - self.started_at

    def move(self, state: TaskState, *, at: float, try_number: int, error: str | None) -> None:
        """Follow one announced state change."""
        if state is TaskState.RUNNING:
            self.started_at, self.ended_at = at, None
        elif (state.finished or state is TaskState.UP_FOR_RETRY) and self.started_at is not None:
            self.ended_at = at
        self.state = state
        self.try_number = max(self.try_number, try_number)
        self.error = error

    def load(self, record: TaskInstanceRecord) -> None:
        """Take every field from the store's row, which is the authority."""
        self.state = record.state
        self.try_number = record.try_number
        self.started_at = record.started_at
        self.ended_at = record.ended_at
        self.error = record.error


class RunDisplay:
    """Shows one run as it goes: fed with `apply(change)`, or `follow(stream)`.

    Use it as a context manager around the run: on a terminal (`live=True`) it starts and stops
    a rich `Live` table; otherwise it prints a header line, then a line per change.
    """

    def __init__(
        self,
        dag: DAG,
        *,
        run_id: str,
        console: Console,
        live: bool,
        now: Callable[[], float] = time.time,
    ) -> None:
        self.dag_id = dag.dag_id
        self.run_id = run_id
        self.run_state: RunState | None = None
        self._console = console
        self._live_mode = live
        self._live: Live | None = None
        self._now = now
        self._started_at = now()
        order = dag.topological_order()
        self._order = {task_id: position for position, task_id in enumerate(order)}
        self._expanded: set[str] = set()
        self._rows = {(task_id, -1): TaskRow(task_id) for task_id in order}
        self._width = max([_LABEL_WIDTH, *(len(task_id) for task_id in order)])

    # -- lifecycle ------------------------------------------------------------------------------

    def __enter__(self) -> RunDisplay:
        if self._live_mode:
            self._live = Live(
                console=self._console,
                get_renderable=self.render,
                refresh_per_second=_REFRESH_PER_SECOND,
                # Tasks in this process have their output captured into their logs; a second
                # redirection by rich would steal it, so rich leaves sys.stdout alone.
                redirect_stdout=False,
                redirect_stderr=False,
            )
            self._live.start()
        else:
            count = len(self.rows)
            tasks = "task" if count == 1 else "tasks"
            self._print(Text(f"Run {self.run_id} of {self.dag_id} ({count} {tasks})"))
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._live is not None:
            self._live.stop()  # draws the final state once more
            self._live = None

    # -- input ----------------------------------------------------------------------------------

    async def follow(self, changes: AsyncIterable[Change]) -> None:
        """Apply every change of this run from `changes` until the stream ends."""
        async for change in changes:
            self.apply(change)

    def apply(self, change: Change) -> None:
        """Follow one change; changes of other runs are ignored."""
        if not isinstance(change, TaskChanged | RunChanged) or change.run_id != self.run_id:
            return
        if isinstance(change, RunChanged):
            self.run_state = change.state
            self._announce(change.at, "run", change.state, 0, None)
            return
        row = self._row(change.task_id, change.map_index)
        row.move(change.state, at=change.at, try_number=change.try_number, error=change.error)
        row.log_path = change.log_path or row.log_path
        self._announce(change.at, row.label, row.state, row.try_number, row.error)

    def seed(self, records: Iterable[TaskInstanceRecord]) -> None:
        """Start from the store's rows of the run: the engine may have made more than planned."""
        for record in records:
            self._row(record.task_id, record.map_index).load(record)

    def finish(self, records: Iterable[TaskInstanceRecord]) -> None:
        """End on the store's final rows, announcing any change the stream did not deliver."""
        for record in records:
            row = self._row(record.task_id, record.map_index)
            if row.state != record.state:
                at = record.ended_at or self._now()
                self._announce(at, row.label, record.state, record.try_number, record.error)
            row.load(record)

    def note(self, message: str) -> None:
        """Print a message above the table (or between the lines)."""
        self._print(Text(message, style="bold"))

    # -- what is shown --------------------------------------------------------------------------

    @property
    def rows(self) -> list[TaskRow]:
        """The task instances of the run, in dependency order.

        An expanded task's placeholder row disappears once its instances exist.
        """
        rows = [
            row
            for row in list(self._rows.values())  # a copy: rich renders from another thread
            if not (row.map_index < 0 and row.task_id in self._expanded)
        ]
        return sorted(rows, key=self._position)

    @property
    def log_paths(self) -> list[str]:
        """The log files of the tries announced so far."""
        return [row.log_path for row in list(self._rows.values()) if row.log_path]

    def render(self) -> RenderableType:
        """The table of tasks and the progress bar (called by rich's refresh thread)."""
        now = self._now()
        rows = self.rows
        shown = self._rows_to_show(rows)
        table = Table(title=f"{self.dag_id}  {self.run_id}", box=box.SIMPLE_HEAD)
        for name in ("task", "state", "try", "duration", "error"):
            table.add_column(name, no_wrap=True, overflow="ellipsis")
        for row in shown:
            table.add_row(
                row.label,
                state_text(row.state),
                str(row.try_number or ""),
                format_duration(row.duration(now)),
                Text(row.error or "", style="red"),
            )
        if len(shown) < len(rows):
            table.caption = f"... and {len(rows) - len(shown)} more tasks"
        return Group(table, self._progress(rows, now))

    def _progress(self, rows: list[TaskRow], now: float) -> Table:
        finished = sum(row.state.finished for row in rows)
        failed = sum(row.state is TaskState.FAILED for row in rows)
        grid = Table.grid(padding=(0, 1))
        grid.add_row(
            ProgressBar(
                total=max(len(rows), 1),
                completed=finished,
                width=40,
                complete_style="cyan",
                finished_style="green",
            ),
            Text(f"{finished}/{len(rows)} finished"),
            Text(f"{failed} failed", style="bold red") if failed else Text(""),
            Text(format_duration(now - self._started_at), style="dim"),
        )
        return grid

    def _rows_to_show(self, rows: list[TaskRow]) -> list[TaskRow]:
        """All rows when they fit; else the running and failed ones first, in dependency order."""
        limit = max(5, self._console.height - 8)
        if len(rows) <= limit:
            return rows
        chosen = sorted(rows, key=lambda row: (_urgency(row.state), self._position(row)))[:limit]
        return sorted(chosen, key=self._position)

    # -- helpers --------------------------------------------------------------------------------

    def _row(self, task_id: str, map_index: int) -> TaskRow:
        key = (task_id, map_index)
        row = self._rows.get(key)
        if row is None:
            row = self._rows[key] = TaskRow(task_id, map_index)
            if map_index >= 0:
                self._expanded.add(task_id)
        return row

    def _position(self, row: TaskRow) -> tuple[int, int]:
        return (self._order.get(row.task_id, len(self._order)), row.map_index)

    def _announce(
        self, at: float, label: str, state: str, try_number: int, error: str | None
    ) -> None:
        """In plain mode, one line per change; on a terminal the table shows it instead."""
        if not self._live_mode:
            self._print(plain_line(at, label, state, try_number, error, width=self._width))

    def _print(self, text: Text) -> None:
        # soft_wrap: a CI log keeps one line per change, whatever its width.
        self._console.print(text, soft_wrap=True)


def plain_line(
    at: float, label: str, state: str, try_number: int, error: str | None, *, width: int
) -> Text:
    """`12:00:01 train            running  (try 1)`, the state in its colour."""
    line = Text(f"{format_clock(at)} {label.ljust(width)} ")
    line.append(state.ljust(8), style=STATE_STYLES.get(state, ""))
    if try_number:
        line.append(f" (try {try_number})")
    if error:
        line.append(f"  {error}", style="red")
    line.rstrip()
    return line


def _urgency(state: TaskState) -> int:
    """Which rows to keep on a small screen: running, then failed, then pending, then done."""
    if state in _ACTIVE:
        return 0
    if state in _FAILURES:
        return 1
    return 3 if state.finished else 2
