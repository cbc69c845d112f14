"""The DAGs folder, loaded: every DAG by id, and every problem with its file and line.

Each file is imported on its own by `loading/importer.py`, so one broken file costs only its
own DAGs. The bag then checks what needs the whole folder (a DAG id defined in two files) or
the configuration (a task in a pool nobody configured).
"""

from __future__ import annotations

import os
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from orchestrator.authoring.dag import DAG
from orchestrator.errors import DagError, DagNotFoundError
from orchestrator.loading.importcheck import ImportLimits, Verdict, check_files
from orchestrator.loading.importer import FileResult, load_dag_file

#: What tells a file's version apart: (inode, mtime_ns, size).
Stamp = tuple[int, int, int]


@dataclass
class DagBag:
    """The DAGs found in one folder, the file each came from, and what went wrong."""

    folder: Path
    dags: dict[str, DAG] = field(default_factory=dict)  # dag_id -> DAG
    files: dict[str, str] = field(default_factory=dict)  # dag_id -> absolute path of its file
    errors: list[DagError] = field(default_factory=list)  # each with file and line
    # dag_id -> (file, DAG, its error) of a definition ignored because another file had the id
    # first; it takes over when that file drops the DAG (a DAG moved from one file to another).
    shadowed: dict[str, tuple[str, DAG, DagError]] = field(default_factory=dict)
    # path -> stamp of each file as it was just before it was loaded: a file that changed after
    # that but before the folder was watched (or through a symlink) is found by
    # `changed_since_loaded`.
    stamps: dict[str, Stamp] = field(default_factory=dict)

    def get(self, dag_id: str) -> DAG:
        """The DAG with this id; else a `DagNotFoundError` listing what there is instead."""
        try:
            return self.dags[dag_id]
        except KeyError:
            raise DagNotFoundError(self._not_found_message(dag_id)) from None

    def _not_found_message(self, dag_id: str) -> str:
        import difflib  # only on this error path

        message = f"no DAG with id {dag_id!r} in {self.folder}"
        close = difflib.get_close_matches(dag_id, self.dags, n=3)
        if close:
            message += f"; did you mean {' or '.join(repr(name) for name in close)}?"
        known = ", ".join(sorted(self.dags)) or "none"
        message += f"\nDAGs loaded: {known}"
        if self.errors:
            # The DAG may be in a file that failed to import: show why, not just that it is absent.
            problems = "\n".join(f"  {error}" for error in self.errors)
            message += f"\nProblems found while loading the folder:\n{problems}"
        return message


@dataclass(frozen=True)
class FileChange:
    """What reloading one file did: DAGs loaded (new or changed) and DAG ids dropped."""

    loaded: list[DAG]
    removed: list[str]
    broken: bool  # the file has errors; DAGs it no longer gives keep their last good version


def replace_file(bag: DagBag, result: FileResult, *, pools: Collection[str] | None) -> FileChange:
    """Put a file's new import result into the bag, keeping the last good version when broken.

    A file that now fails keeps serving its DAGs as they were (their schedules and run
    triggers go on) and its errors are shown; a file that loads cleanly replaces its DAGs, and
    the DAGs it no longer defines are dropped. A deleted file is a clean result with no DAGs.
    """
    path = result.path
    before = {dag_id for dag_id, file in bag.files.items() if file == path}
    bag.shadowed = {key: value for key, value in bag.shadowed.items() if value[0] != path}
    bag.errors = [error for error in bag.errors if error.file != path]
    bag.errors.extend(result.errors)
    first_file = {dag_id: file for dag_id, file in bag.files.items() if file != path}
    loaded = []
    for pipeline in result.dags.values():
        _add_dag(bag, pipeline, path, first_file, pools)
        if bag.dags.get(pipeline.dag_id) is pipeline:
            loaded.append(pipeline)
    broken = bool(result.errors)
    removed = [] if broken else sorted(before - {dag.dag_id for dag in loaded})
    for dag_id in removed:
        del bag.dags[dag_id]
        del bag.files[dag_id]
    loaded.extend(_promote_shadowed(bag, removed, pools))
    removed = [dag_id for dag_id in removed if dag_id not in bag.dags]
    return FileChange(loaded=loaded, removed=removed, broken=broken)


def _promote_shadowed(bag: DagBag, dag_ids: list[str], pools: Collection[str] | None) -> list[DAG]:
    """The definitions ignored as duplicates of these DAG ids, now that their first file
    dropped them: a reload in the other order (new file first) must not lose the DAG."""
    promoted = []
    for dag_id in dag_ids:
        if dag_id not in bag.shadowed:
            continue
        path, pipeline, duplicate = bag.shadowed.pop(dag_id)
        bag.errors = [error for error in bag.errors if error is not duplicate]
        _add_dag(bag, pipeline, path, {}, pools)
        if bag.dags.get(dag_id) is pipeline:
            promoted.append(pipeline)
    return promoted


def load_dag_bag(
    folder: Path,
    *,
    pools: Collection[str] | None = None,
    limits: ImportLimits | None = None,
    state_dir: Path | None = None,
) -> DagBag:
    """Import every DAG file under `folder`; never raises for a fault in the files.

    Files and folders whose names start with `_` or `.` are skipped (helpers, caches, editor
    files). When `pools` is given, a DAG with a task in any other pool is left out, with an
    error at that task's line, because its task could never be scheduled. When `limits` is
    given, each file is imported here only once its import passed a check in a subprocess
    under them (`loading/importcheck.py`): the daemon and the CLI always give them, and their
    `state_dir`, where the verdicts are kept for the next process.
    """
    folder = Path(os.path.abspath(folder))
    bag = DagBag(folder)
    if not folder.is_dir():
        bag.errors.append(_missing_folder_error(folder))
        return bag
    first_file: dict[str, str] = {}  # dag_id -> first file defining it, kept or not
    paths = dag_files(folder)
    bag.stamps = file_stamps(paths)
    verdicts = {} if limits is None else check_files(paths, limits, state_dir=state_dir)
    for path in paths:
        result = _import_if_passed(path, verdicts.get(path))
        bag.errors.extend(result.errors)
        for pipeline in result.dags.values():
            _add_dag(bag, pipeline, result.path, first_file, pools)
    return bag


def _import_if_passed(path: str, verdict: Verdict) -> FileResult:
    """The file imported here if its check passed (or none was made), else its check's error."""
    if verdict is None:
        return load_dag_file(path)
    return FileResult(os.path.abspath(path), errors=[verdict])


def load_checked_file(
    path: str, limits: ImportLimits, *, state_dir: Path | None = None
) -> FileResult:
    """Check one file (or reuse its last check if unchanged), then import it if it passed."""
    return _import_if_passed(path, check_files([path], limits, state_dir=state_dir)[path])


def changed_since_loaded(bag: DagBag) -> list[str]:
    """The DAG files added, changed or removed since `load_dag_bag` read the folder."""
    now = file_stamps(dag_files(bag.folder))
    return sorted(path for path in {*now, *bag.stamps} if now.get(path) != bag.stamps.get(path))


def note_stamp(bag: DagBag, path: str, stamp: Stamp | None) -> None:
    """`path` was loaded again as it was at `stamp` (None: it is gone)."""
    if stamp is None:
        bag.stamps.pop(path, None)
    else:
        bag.stamps[path] = stamp


def forget_missing_folder(bag: DagBag) -> None:
    """The folder exists now: drop the error saying it did not."""
    bag.errors = [error for error in bag.errors if error.file != str(bag.folder)]


def file_stamps(paths: Collection[str]) -> dict[str, Stamp]:
    """Each file's (inode, mtime_ns, size), through symlinks: the inode tells a file put in
    its place (a swapped folder) even with the same time and size."""
    stamps = {}
    for path in paths:
        try:
            status = os.stat(path)
        except OSError:
            continue  # gone meanwhile: the comparison then sees it removed
        stamps[path] = (status.st_ino, status.st_mtime_ns, status.st_size)
    return stamps


def dag_files(folder: Path) -> list[str]:
    """The Python files under `folder` to import, sorted, skipping `_*` and `.*` names."""
    return sorted(_walk(str(folder)))


def _walk(folder: str) -> Iterator[str]:
    for root, dirs, names in os.walk(folder):
        dirs[:] = [name for name in dirs if not name.startswith(("_", "."))]
        for name in names:
            if name.endswith(".py") and not name.startswith(("_", ".")):
                yield os.path.join(root, name)


def _add_dag(
    bag: DagBag,
    pipeline: DAG,
    path: str,
    first_file: dict[str, str],
    pools: Collection[str] | None,
) -> None:
    first = first_file.setdefault(pipeline.dag_id, path)
    if first != path:
        duplicate = DagError(
            f"DAG id {pipeline.dag_id!r} is already defined in {first}; DAG ids must be "
            "unique in the DAGs folder, so this one is ignored",
            file=pipeline.site.file,
            line=pipeline.site.line,
        )
        bag.errors.append(duplicate)
        bag.shadowed[pipeline.dag_id] = (path, pipeline, duplicate)
        return
    pool_errors = [] if pools is None else list(_unknown_pool_errors(pipeline, pools))
    if pool_errors:
        bag.errors.extend(pool_errors)
        return
    bag.dags[pipeline.dag_id] = pipeline
    bag.files[pipeline.dag_id] = path


def _unknown_pool_errors(pipeline: DAG, pools: Collection[str]) -> Iterator[DagError]:
    known = ", ".join(sorted(pools)) or "none"
    for task in pipeline.tasks.values():
        pool = task.options.pool
        if pool not in pools:
            yield DagError(
                f"task {task.task_id!r} of DAG {pipeline.dag_id!r} uses pool {pool!r}, which is "
                f"not configured (pools: {known}), so the DAG is not loaded; add it under "
                f"[pools] in orchestrator.toml, e.g. `{pool} = 1`",
                file=task.site.file,
                line=task.site.line,
            )


def _missing_folder_error(folder: Path) -> DagError:
    problem = "is not a folder" if folder.exists() else "does not exist"
    return DagError(
        f"the DAGs folder {folder} {problem}; create it, or point to yours with --dags-folder, "
        "the ORCHESTRATOR_DAGS_FOLDER environment variable, or `dags_folder` in "
        "orchestrator.toml",
        file=str(folder),
    )
