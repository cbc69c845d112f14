"""The README's Airflow support table: every row gives a status, and every test it cites exists."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
STATUSES = ("supported", "supported with differences", "not supported")


def table_rows() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Coming from Airflow") :]
    table = section[section.index("| Airflow feature") :]
    return table[: table.index("\n\n")].splitlines()[2:]


def test_every_row_has_a_status_and_cites_existing_tests() -> None:
    tests = "\n".join(path.read_text() for path in (ROOT / "tests").rglob("test_*.py"))
    rows = table_rows()
    assert len(rows) > 20
    for row in rows:
        status = row.rsplit(" | ", 1)[1]
        assert status.startswith(STATUSES), row
        cited = re.findall(r"`(test_\w+)`", status)
        assert cited, f"no test cited: {row}"
        for name in cited:
            assert re.search(rf"def {name}\(", tests), f"{name} is cited but does not exist"
