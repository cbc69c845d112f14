"""Loading: the DAGs folder and the isolated import of DAG files.

`importer` imports one DAG file and reports what it held or why it failed, with file and line;
`dagbag` holds every DAG of a folder by id, and every problem found while loading it.

Imports: the core modules and `authoring`.
"""
