"""The web UI: server-rendered pages (Jinja2), htmx, live updates over server-sent events.

Imports: api, scheduling and everything below it; the daemon mounts it.
"""
