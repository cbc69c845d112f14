"""The `orchestrator` command line.

Importing this package imports click and nothing heavy: each command imports the engine, the
store or rich only when it runs, so `orchestrator --help` answers at once.
"""

from __future__ import annotations

from orchestrator.cli.app import cli, main

__all__ = ("cli", "main")
