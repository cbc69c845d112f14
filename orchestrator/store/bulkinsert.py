"""Inserting many rows into one table, `ROWS_PER_STATEMENT` rows a statement.

`executemany` runs its statement once per row: each row pays a reset, a step and SQLite's
start and end of a statement, beside the row's own work. Arming 100,000 sensors inserts
300,000 rows (a task instance, a try and a trigger each). One `INSERT ... VALUES (...),
(...), ...` of 64 rows pays those once for the 64: the writer's SQLite work for the arming's
rows went from 1.03 to 0.84 s (the rows of `bench/deferral.py`'s arming, inserted as the
store does). The rows land in the same order (a table's rowids too: SQLite inserts a VALUES
list in its order) and a row that breaks a constraint fails its statement with the same error.

The rows that do not fill a whole statement go one a statement, as before, so each table has
two statements whatever the number of rows, and the connection's statement cache keeps both.
"""

from __future__ import annotations

import itertools
import sqlite3
from collections.abc import Iterator, Sequence
from typing import Any

#: 64 rows of at most 15 columns stay under 999 parameters, SQLite's limit before 3.32.
ROWS_PER_STATEMENT = 64


class BulkInsert:
    """The INSERT of rows of `columns` (in that order) into `table`, many at a time."""

    def __init__(self, table: str, columns: str) -> None:
        count = len(columns.split(","))
        row = f"({', '.join(['?'] * count)})"
        head = f"INSERT INTO {table} ({columns}) VALUES "
        #: One row a statement: for a single row, and the rows that do not fill a statement.
        self.one = head + row
        self._many = head + ", ".join([row] * ROWS_PER_STATEMENT)

    def run(self, connection: sqlite3.Connection, rows: Sequence[Sequence[Any]]) -> None:
        """Insert `rows` in their order; one that breaks a constraint raises SQLite's error."""
        whole = len(rows) - len(rows) % ROWS_PER_STATEMENT
        if whole:
            connection.executemany(self._many, _joined(rows, whole))
        if whole < len(rows):
            connection.executemany(self.one, rows[whole:])


def _joined(rows: Sequence[Sequence[Any]], whole: int) -> Iterator[tuple[Any, ...]]:
    """The parameters of the first `whole` rows, `ROWS_PER_STATEMENT` rows' worth at a time."""
    join = itertools.chain.from_iterable
    for start in range(0, whole, ROWS_PER_STATEMENT):
        yield tuple(join(rows[start : start + ROWS_PER_STATEMENT]))
