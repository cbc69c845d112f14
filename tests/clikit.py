"""`orchestrator ARGS` in this process, on a test project's state directory and DAGs folder;
or as a real subprocess (`run_cli`), under a deadline, where a hang must fail the test.

Mix `CliCalls` into a test's project dataclass that has `state` and `dags` paths.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
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


@dataclass(frozen=True)
class Completed:
    """How an `orchestrator` subprocess ended."""

    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


def command(*args: str) -> list[str]:
    return [sys.executable, "-m", "orchestrator.cli", *args]


def environment() -> dict[str, str]:
    """The test's environment without ORCHESTRATOR_* variables, which would change settings."""
    return {
        name: value for name, value in os.environ.items() if not name.startswith("ORCHESTRATOR")
    }


async def run_cli(cwd: Path, *args: str) -> Completed:
    """`orchestrator ARGS` as a subprocess in `cwd`; killed, and the test failed, after 60 s."""
    with anyio.fail_after(60):
        done = await anyio.run_process(command(*args), cwd=cwd, env=environment(), check=False)
    return Completed(done.returncode, done.stdout.decode(), done.stderr.decode())
