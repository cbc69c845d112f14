"""How a write batch folds a task instance's moves into the write before them.

A row inserted by the batch and then moved in it (a run's sensors: inserted in `none`, then
`scheduled`, then `deferred` in the same step) is inserted in its last state instead: one
INSERT, no guarded UPDATE behind it. The guard still holds, checked against the state the
batch itself inserted. Any other write to that row in between (a note, a next call, a
delete) ends the folding for it, so each write still lands in the order it was made.

A row the batch did not insert folds its consecutive moves into one UPDATE from the first
state to the last, guarded by the first (`previous_move`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from orchestrator.state import TaskState, check_task_transition
from orchestrator.store.records import TaskInstanceRecord, check_task_state_fields

if TYPE_CHECKING:
    from orchestrator.store.base import Op

TaskKey = tuple[str, str, int]
#: Per inserted row moved in its batch: its columns' values in the last state, by name.
Moved = dict[TaskKey, dict[str, Any]]


class InsertFolding:
    """The rows a batch inserted and has written nothing else to since: moves fold into them."""

    def __init__(self) -> None:
        # key -> (the state the batch last gave the row, the insert's `Moved`)
        self._open: dict[TaskKey, tuple[TaskState, Moved]] = {}

    def inserted(self, records: list[TaskInstanceRecord]) -> Moved:
        """Note the rows one insert writes; returns where their moves go (the insert's args)."""
        moved: Moved = {}
        for record in records:
            self._open[(record.run_id, record.task_id, record.map_index)] = (record.state, moved)
        return moved

    def fold(self, key: TaskKey, old: TaskState, new: TaskState, fields: dict[str, Any]) -> bool:
        """Fold a checked move into the row's insert; False if it must be written on its own."""
        entry = self._open.get(key)
        if entry is None or entry[0] is not old:
            return False  # not inserted here, or a conflict the UPDATE's guard will report
        moved = entry[1]
        columns = moved.get(key)
        if columns is None:
            columns = moved[key] = {}
        columns.update(fields)
        columns["state"] = new._value_  # `.value` is a descriptor call; `_value_` the same text
        self._open[key] = (new, moved)
        return True

    def close(self, key: TaskKey) -> None:
        """Another write touched the row: later moves are written after it, as UPDATEs."""
        self._open.pop(key, None)


def check_move(old: TaskState, new: TaskState, fields: dict[str, Any]) -> None:
    """Raise unless the transition and the field names are allowed (before any folding)."""
    check_task_transition(old, new)
    check_task_state_fields(fields)


def move_args(
    key: TaskKey, old: TaskState, new: TaskState, fields: dict[str, Any]
) -> dict[str, Any]:
    """A checked move's arguments, for a move written on its own (one that did not fold)."""
    return {"key": key, "old": old, "new": new, "fields": fields}


def previous_move(ops: list[Op], move: dict[str, Any]) -> dict[str, Any]:
    """The move, taking over the move of the same row just before it in `ops`, if any."""
    last = ops[-1].args if ops and ops[-1].kind == "set_task_state" else {}
    if last.get("key") == move["key"] and last["new"] is move["old"]:
        # The row moves on at once (scheduled, queued, then running): one UPDATE from the
        # first state to the last, guarded by the first, instead of one per move.
        ops.pop()
        move["old"], move["fields"] = last["old"], {**last["fields"], **move["fields"]}
    return move
