"""Authoring: what a pipeline file uses.

The DAG and its tasks (`dag`, `tasks`, `taskflow`, `operators`), references to task results
(`references`), where in a DAG file a thing was defined (`sites`), trigger rules, the retry
policy, assets, what starts a DAG's runs by itself (`schedules`, `trigger_schedules`,
`intervals`, `moments`, `run_sources`), the `Defer` API (`defer`) and the context a task
sees (`context`).

Imports: the core modules (`orchestrator.errors`, `clock`, `state`, `config`, `changes`) and
`triggers.base`, nothing else of `orchestrator`. A DAG file and a worker process import this
layer, so it stays light and knows nothing of how runs are scheduled, executed or served.
"""
