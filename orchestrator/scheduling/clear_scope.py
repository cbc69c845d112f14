"""Which tasks a clear resets: the named ones, what is downstream, and the setups they need.

Work needs what its setup made, and by the time anyone clears the work the setup's teardown
has usually removed it. So, as in Airflow, clearing a task also clears the setups in its
"scope" and their teardowns, and the setup runs again before the work: a setup upstream of
the task whose teardown is downstream of it (the task sits between the two), or a setup with
no teardown at all. A setup cleared by name takes its teardowns along. Setups and teardowns
are marked on the tasks (`Task.is_setup`, `Task.is_teardown`); in a DAG without them this is
the plain selection.
"""

from __future__ import annotations

from collections.abc import Sequence

from orchestrator.authoring.dag import DAG


def cleared_task_ids(dag: DAG, task_ids: Sequence[str], *, downstream: bool) -> set[str]:
    """The tasks that clearing `task_ids` (and, with `downstream`, what is below) resets.

    Follows Airflow's clear without upstream: each cleared task that is neither a setup nor a
    teardown brings the setups in its scope, and a setup cleared by name its own teardowns.
    One walk per setup of the DAG, none in a DAG without setups.
    """
    named = set(task_ids)
    selected = dag.downstream_of(named) if downstream else set(named)
    work = {t for t in selected if not (dag.tasks[t].is_setup or dag.tasks[t].is_teardown)}
    for setup_id in [t for t, task in dag.tasks.items() if task.is_setup]:
        teardowns = {t for t in dag.tasks[setup_id].downstream_task_ids if dag.tasks[t].is_teardown}
        if setup_id in named or work & _scope(dag, setup_id, teardowns):
            selected |= {setup_id, *teardowns}
    return selected


def _scope(dag: DAG, setup_id: str, teardowns: set[str]) -> set[str]:
    """The tasks that need a setup: those after it and before one of its teardowns, or every
    task after it when it has no teardown."""
    after = dag.downstream_of([setup_id])
    return after & dag.upstream_of(teardowns) if teardowns else after
