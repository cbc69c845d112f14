"""`python -m orchestrator.cli`: the same as the `orchestrator` console script."""

from __future__ import annotations

from orchestrator.cli import main

if __name__ == "__main__":
    main()
