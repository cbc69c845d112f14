"""The process exit codes of the `orchestrator` command, in one place.

Scripts and CI read them, so they never change meaning.
"""

from __future__ import annotations

from orchestrator.errors import OrchestratorError, RunStuckError, StoreError

EXIT_OK = 0
# a run failed, was cancelled, or cannot go on (it waits on a failed previous run);
# the state cannot be used (corrupted database)
EXIT_FAILED = 1
EXIT_USAGE = 2  # a user mistake: a bad flag, config or --conf, an unknown DAG, run or task
EXIT_INTERRUPTED = 130  # Ctrl-C (128 + SIGINT, as shells report it)


def exit_code_for(error: OrchestratorError) -> int:
    """1 when the state itself is unusable (nothing a flag can fix) or a run could not finish,
    2 for a user mistake."""
    return EXIT_FAILED if isinstance(error, StoreError | RunStuckError) else EXIT_USAGE
