"""The daemon: the long-lived process that hosts everything.

`lifecycle` starts and stops it (engine, API, signals), `control` is its control socket (server
and client), `reload` re-imports DAG files when they change, `state_lock` keeps one daemon per
state directory, and `log_setup` writes its own log for a terminal or journald.

Imports: every layer but `cli`.
"""
