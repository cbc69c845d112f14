"""`orchestrator ARGS` in this process, on a test project's state directory and DAGs folder.

Mix `CliCalls` into a test's project dataclass that has `state` and `dags` paths.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from click.testing import CliRunner, Result

from orchestrator.cli import cli


class CliCalls:
    state: Path
    dags: Path

    def invoke(self, *args: str) -> Result:
        """`orchestrator ARGS` in this process, on this project's folders."""
        where = ["--state-dir", str(self.state), "--dags-folder", str(self.dags)]
        return CliRunner().invoke(cli, [*args, *where], prog_name="orchestrator")

    def ok(self, *args: str) -> Result:
        """`invoke`, which must exit 0."""
        result = self.invoke(*args)
        assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
        return result

    def json(self, *args: str) -> Any:
        """`ok` with `--json`, parsed."""
        return json.loads(self.ok(*args, "--json").stdout)
