"""Scheduling: what decides.

`engine` is the loop: it wakes on messages, takes one scheduling step, commits one store
transaction and dispatches. Around it: the `scheduler` (which task instances are ready and get
a slot), `active_runs` (the in-memory picture of the runs being driven), `deferred` (decisions
about deferred task instances and timers), `autostart` with `events_to_runs` and
`schedule_ticks` (runs that start themselves), `recovery` (runs an earlier process left), and
`run_edits` (clear and cancel, by hand).

Imports: the core modules, `store`, `authoring`, `loading`, `execution` and `waiting`; never
`api`, `ui`, `daemon` or `cli`, so the same engine serves the daemon and a foreground run.
"""
