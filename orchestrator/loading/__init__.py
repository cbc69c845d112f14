"""Loading: the DAGs folder and the isolated import of DAG files.

`importer` imports one DAG file and reports what it held or why it failed, with file and line;
`importcheck` first tries that import in a subprocess under time and memory limits, which runs
`importprobe`, so no file can hang, stop or bloat the process that loads it; `dagbag` holds
every DAG of a folder by id, and every problem found while loading it.

Imports: the core modules and `authoring`.
"""
