"""Execution: what runs task code.

`executor` is the interface the engine calls (one try in, one `TaskOutcome` out); behind it the
`worker_pool` of `worker` processes, `invoke` (calling a task or its resume target, which may
defer), `log_capture`, `capped_log` and `log_pipe` (per-try logs, held to `task_log_max_bytes`
while the try runs), `try_processes` (no process of a try outlives it), `results` (size-checked
JSON results) and `jobs` (what crosses to a worker and back). A distributed executor goes here.

Imports: the core modules, `authoring` and `loading` (a worker imports the DAG file); never the
scheduler, the store or anything above.
"""
