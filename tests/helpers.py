"""Helpers shared by the tests (importable as `helpers`: pytest puts tests/ on the path)."""

from __future__ import annotations

from pathlib import Path

from orchestrator.authoring.dag import DAG
from orchestrator.loading.dagbag import DagBag


def bag_of(*dags: DAG) -> DagBag:
    """A DagBag holding DAGs built in the test itself."""
    return DagBag(
        folder=Path("."),
        dags={dag.dag_id: dag for dag in dags},
        files={dag.dag_id: dag.site.file for dag in dags},
    )
