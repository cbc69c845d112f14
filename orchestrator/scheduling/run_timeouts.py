"""Run timeouts: a run still running `DAG.run_timeout` seconds after it started fails.

When a run starts, or is picked up running after a restart (the deadline comes from its
stored `started_at`, so a restart neither resets nor loses it), the scheduler sets a timer at
its deadline. When that comes due, the run is cancelled the way a user's cancel is (running
tries killed, deferred triggers dropped, unfinished instances cancelled), in one step, with
the reason as each instance's error; the run then ends failed, not cancelled: Airflow's
`dagrun_timeout`. The `run_too_long` alert (overdue.py) reads the same deadline: it warns,
this acts.
"""

from __future__ import annotations

from datetime import UTC, datetime

from orchestrator.scheduling.active_runs import ActiveRun
from orchestrator.scheduling.deferred import Timer
from orchestrator.state import RunState

RUN_TIMEOUT = "run_timeout"  # a timer's kind; its key is (run_id, "", -1)


def running_deadline(run: ActiveRun, seconds: float) -> tuple[float, str] | None:
    """When a running run will have run `seconds`, and how to say so; None if not running."""
    if run.state is not RunState.RUNNING or run.started_at is None:
        return None
    started = datetime.fromtimestamp(run.started_at, UTC).isoformat(timespec="seconds")
    return run.started_at + seconds, f"still running {seconds:g} s after it started at {started}"


def timeout_timer(run: ActiveRun) -> Timer | None:
    """The timer at the run's deadline, if its DAG has a `run_timeout` and it is running."""
    found = _deadline(run)
    return None if found is None else Timer(found[0], (run.run_id, "", -1), RUN_TIMEOUT)


def timed_out(run: ActiveRun, due: float) -> str | None:
    """Why the run fails, if a timer set for `due` is still its deadline (else None).

    A cleared run that finished and started again has a later deadline: its old timer is stale.
    """
    found = _deadline(run)
    if found is None or found[0] != due or run.cancelling:
        return None
    return f"the run timed out (run_timeout): {found[1]}"


def _deadline(run: ActiveRun) -> tuple[float, str] | None:
    timeout = run.dag.run_timeout
    return None if timeout is None else running_deadline(run, timeout)
