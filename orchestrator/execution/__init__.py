"""Execution: what runs task code.

`interface` is what the engine calls (one try in, one `TaskOutcome` out) and opens the
executor the settings name. `executor` is the local one, with its `worker_pool` of `worker`
processes and its `task_threads` (in-process sync tries), `invoke` (calling a task or its
resume target, which may defer), `log_capture`, `log_opener` (async tries' logs opened off
the event loop), `capped_log` and `log_pipe` (per-try logs, held to `task_log_max_bytes`
while the try runs),
`try_processes` (no process of a try outlives it), `results` (size-checked JSON results) and
`jobs` (what crosses to a worker and back). `dask_executor`, `dask_connection` and
`dask_worker` (what runs on a Dask worker) run sync tries on a Dask cluster instead.

Imports: the core modules, `authoring` and `loading` (a worker imports the DAG file); never the
scheduler, the store or anything above.
"""
