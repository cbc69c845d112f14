"""Waiting: what waits without a worker slot.

The `triggerer` hosts deferred tasks' triggers in the engine's event loop, the
`run_trigger_host` hosts the triggers that start a DAG's runs, and the `watchdog` notices when
something blocks the loop. (The input policy the triggers apply is a core module,
`orchestrator.policy`, because triggers themselves import it.)

Imports: the core modules, `store` (records only) and `triggers.base`; never the scheduler or
anything above it.
"""
