"""Scheduling: what decides.

`engine` is the loop: it wakes on `messages`, takes one step of `decisions`, commits one
store transaction and acts (`dispatch` starts tries and callbacks; `timers`, `change_feed`);
a commit that finds the disk full waits for room (`full_disk`) instead of failing the daemon;
`outbox` adds each commit's alerts, with `overdue` finding what did not happen in time.
What users ask for arrives through `run_requests` and `edit_requests`; `startup` opens the
engine and picks up `recovery`'s runs. Deciding: the `scheduler` with `readiness` (trigger
rules, fan-out, branches), `past_runs` (tasks that wait on their previous run) and `slots`
(pools, priorities), `active_runs` and `driven_runs`
(the runs being driven), `deferred` (deferred task instances and their timers), `autostart`
with `events_to_runs` and `schedule_ticks` (runs that start themselves), and `run_edits` (the
rules of clear and cancel, with `clear_scope`: what a clear takes along).

Imports: the core modules, `store`, `authoring`, `loading`, `execution` and `waiting`; never
`api`, `ui`, `daemon` or `cli`, so the same engine serves the daemon and a foreground run.
"""
