"""Loading: the DAGs folder and the isolated import of DAG files.

`importer` imports one DAG file and reports what it held or why it failed, with file and line;
`importcheck` first tries that import in a subprocess under time and memory limits, which runs
`importprobe` (in a fork of the pre-started `checkserver`), so no file can hang, stop or bloat
the process that loads it, and keeps each verdict (`verdictcache`, in the state directory) until
the file changes; `dagbag` holds every DAG of a folder by id, and every problem found while
loading it.

Imports: the core modules and `authoring`.
"""
