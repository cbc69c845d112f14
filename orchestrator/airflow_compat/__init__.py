"""Airflow's public DAG API, mapped onto ours: Airflow 2 and 3 DAG files load and run unchanged.

`imports` maps `import airflow...` onto this package while DAG files load and while their
tasks run (never for anything else); the other modules are the surface those imports name
(`dag`, `baseoperator`, `operators`, `decorators`, `taskgroup`, `setup_teardown`, `context`,
`templating`, `xcom`, `models`, `sensors`, `exceptions`, `assets`, `asset_events`,
`timetables`), each
built from the native authoring API rather than beside it: an Airflow DAG is a native `DAG`,
its operators native tasks.

Imports: the core modules, `authoring`, `triggers` and `sensors` (what any DAG file may use).
"""
